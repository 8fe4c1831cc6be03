"""Local stand-ins for the AWS services moto cannot run, so the demo exercises the real product code.

Each module reproduces one service behaviour on 127.0.0.1 and says in its docstring what it leaves out:
`lambda_runner` (Lambda invoke), `custom_resources` (CloudFormation custom resources), `events`
(EventBridge delivery of SageMaker events), `inference` (SageMaker runtime InvokeEndpoint), `tls` (the
local CA their HTTPS endpoints use).
"""

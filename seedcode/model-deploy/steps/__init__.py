"""The model-deploy pipeline's steps: build, deploy (per stage) and the staging test.

Each module is a set of pure functions that take their boto3 clients as arguments, plus a thin
`main()` that reads the CI environment and builds the clients. Run them with `python -m steps.<name>`.
"""

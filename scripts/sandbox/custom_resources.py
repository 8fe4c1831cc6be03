"""CloudFormation custom resources for stacks in moto: real requests, real HTTPS responses.

Reproduces: for each `Custom::*` resource of a stack, the request CloudFormation sends to its
ServiceToken Lambda (RequestType Create/Update/Delete, ResponseURL, StackId, RequestId,
LogicalResourceId, ResourceType, ResourceProperties with every scalar as a string, PhysicalResourceId
and OldResourceProperties where CloudFormation sends them), properties resolved from the stack's
template, parameters and resources; the pre-signed HTTPS ResponseURL the handler PUTs its answer to
(served on 127.0.0.1 with a certificate from the sandbox CA: the Lambda runs with SSL_CERT_FILE so the
product code verifies TLS as usual); the 4096-byte cap on the answer; a FAILED answer's Reason; the
answer's PhysicalResourceId and Data, which later requests and `Fn::GetAtt` use; dependants that
CloudFormation would have created only after the custom resource (Lambda functions whose environment
uses its Data) get the resolved values. On delete, the Delete request goes out before the stack is
deleted, with the physical id and properties from the Create, so the handler's deletion policy runs.

Leaves out: moto cannot fail or roll back a stack on a FAILED answer (it stays CREATE_IN_PROGRESS and the
caller gets the Reason); no ServiceTimeout clock (an unanswered request is reported at once, where AWS
would wait up to an hour); no SNS service tokens; crhelper's polling mode (it needs scheduled events);
on a replacing Update the old resource's Delete is sent right after the Update, not at cleanup.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .cfn_template import Resolver, load_stack, references
from .exceptions import CustomResourceError
from .lambda_runner import Invocation, LambdaRunner
from .tls import ServerCertificate

MAX_RESPONSE_BYTES = 4096
CUSTOM_TYPES = ("Custom::", "AWS::CloudFormation::CustomResource")


@dataclass(frozen=True)
class CfnResponse:
    """The answer a custom resource handler PUT to its ResponseURL."""

    status: str
    reason: str
    physical_resource_id: str
    data: Mapping[str, Any]
    request_id: str
    logical_resource_id: str
    forward_error: str | None = None

    @classmethod
    def parse(cls, body: bytes) -> CfnResponse:
        if len(body) > MAX_RESPONSE_BYTES:
            document = json.loads(body)
            return cls("FAILED", "Response object is too long.", document.get("PhysicalResourceId", ""), {},
                       document.get("RequestId", ""), document.get("LogicalResourceId", ""))
        document = json.loads(body)
        return cls(
            status=str(document.get("Status", "")),
            reason=str(document.get("Reason") or ""),
            physical_resource_id=str(document.get("PhysicalResourceId") or ""),
            data=dict(document.get("Data") or {}),
            request_id=str(document.get("RequestId", "")),
            logical_resource_id=str(document.get("LogicalResourceId", "")),
        )


@dataclass(frozen=True)
class Outcome:
    """One custom resource request: what was sent, what the Lambda did, what it answered."""

    logical_id: str
    request_type: str
    request: Mapping[str, Any]
    invocation: Invocation
    response: CfnResponse | None
    updated_functions: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return (self.response is not None and self.response.status == "SUCCESS"
                and self.response.forward_error is None)

    @property
    def message(self) -> str:
        """One line for the user: the FAILED Reason, or why no answer came."""
        if self.response is not None:
            if self.response.forward_error:
                return f"{self.request_type} {self.logical_id}: {self.response.forward_error}"
            if self.ok:
                physical_id = self.response.physical_resource_id
                return f"{self.request_type} {self.logical_id}: SUCCESS ({physical_id})"
            return f"{self.request_type} {self.logical_id} FAILED: {self.response.reason}"
        why = (f"the Lambda failed with {self.invocation.error_type}: {self.invocation.error_message}"
               if not self.invocation.ok else "the Lambda returned without answering")
        return (f"{self.request_type} {self.logical_id}: no response ({why}); CloudFormation would wait "
                f"until the resource's ServiceTimeout. Log: {self.invocation.log_file}")

    def raise_for_failure(self) -> CfnResponse:
        if not self.ok or self.response is None:
            raise CustomResourceError(self.message)
        return self.response


@dataclass(frozen=True)
class Deletion:
    """The Delete requests sent for a stack's custom resources, and moto's own stack deletion error."""

    outcomes: tuple[Outcome, ...]
    stack_error: str | None

    @property
    def ok(self) -> bool:
        return self.stack_error is None and all(o.ok for o in self.outcomes)


class ResponseEndpoint:
    """HTTPS server standing in for CloudFormation's pre-signed response URLs.

    It records every answer by RequestId and forwards the answers to Create requests to moto's
    `cfnresponse` route, which completes the stack.
    """

    def __init__(self, certificate: ServerCertificate, moto_url: str, host: str = "127.0.0.1") -> None:
        self._moto_url = moto_url.rstrip("/")
        self._responses: dict[str, CfnResponse] = {}
        self._forward: set[str] = set()
        self._arrived = threading.Condition()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = endpoint._record(self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
                return

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.socket = certificate.server_context().wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="cfn-response", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ResponseEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def response_url(self, region: str, stack_id: str) -> str:
        return f"https://127.0.0.1:{self.port}/cloudformation_{region}/cfnresponse?stack={stack_id}"

    def expect(self, request_id: str, *, forward: bool) -> None:
        with self._arrived:
            if forward:
                self._forward.add(request_id)

    def wait(self, request_id: str, timeout: float) -> CfnResponse | None:
        with self._arrived:
            self._arrived.wait_for(lambda: request_id in self._responses, timeout=timeout)
            return self._responses.get(request_id)

    def _forward_to_moto(self, path: str, body: bytes) -> None:
        # moto routes the request by content type: JSON works, urllib's default form type does not
        request = urllib.request.Request(  # noqa: S310 - moto on 127.0.0.1
            f"{self._moto_url}{path}", data=body, method="PUT", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            answer.read()

    def _record(self, path: str, body: bytes) -> int:
        try:
            response = CfnResponse.parse(body)
        except (ValueError, AttributeError):
            return 400
        if response.request_id in self._forward and response.status == "SUCCESS":
            try:
                self._forward_to_moto(path, body)
            except OSError as exc:  # the handler's upload succeeded; the stack did not hear of it
                response = replace(response, forward_error=f"moto did not accept the response: {exc}")
        with self._arrived:
            self._responses[response.request_id] = response
            self._arrived.notify_all()
        return 200


def _as_cfn_strings(value: Any) -> Any:
    """CloudFormation passes every scalar property to a custom resource as a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return [_as_cfn_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_cfn_strings(v) for k, v in value.items()}
    return value


@dataclass
class CustomResourceBridge:
    """Sends a stack's custom resource requests to their Lambdas (run locally) and relays the answers.

    What each Create answered (physical id, properties, Data) is kept in `state_file`, so a later
    process (`demo down`) can send the matching Delete.
    """

    cfn: Any
    runner: LambdaRunner
    endpoint: ResponseEndpoint
    clients: Callable[[str], Any]
    region: str
    account: str
    state_file: Path
    answer_timeout: float = 5.0
    # physical ids of resources moto skipped and the sandbox created itself (see stack_gaps)
    extra_refs: dict[str, str] = field(default_factory=dict)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.state_file.exists():
            self._state = json.loads(self.state_file.read_text())

    # --- lifecycle --------------------------------------------------------------------------------

    def create(self, stack_name: str, parameters: Mapping[str, str] | None = None) -> list[Outcome]:
        """Send Create for every custom resource the stack waits on; stops at the first failure."""
        stack, template, resolver = self._load(stack_name, parameters)
        done = self._state.setdefault(stack["StackId"], {})
        outcomes: list[Outcome] = []
        for logical_id in self._in_dependency_order(template, resolver):
            if logical_id in done:
                continue
            properties = _as_cfn_strings(resolver.resolve(template["Resources"][logical_id]["Properties"]))
            request = self._request("Create", stack, template, logical_id, properties)
            outcome = self._send(request, forward=True)
            if not outcome.ok or outcome.response is None:
                outcomes.append(outcome)
                break
            done[logical_id] = {
                "PhysicalResourceId": outcome.response.physical_resource_id,
                "ResourceType": request["ResourceType"],
                "ResourceProperties": properties,
                "Data": dict(outcome.response.data),
            }
            self._save()
            self._add_overrides(resolver, stack["StackId"])
            updated = self._update_dependent_functions(template, resolver, logical_id)
            outcomes.append(replace(outcome, updated_functions=updated))
        return outcomes

    def update(self, stack_name: str, parameters: Mapping[str, str] | None = None) -> list[Outcome]:
        """After the stack was updated in moto: Update for each custom resource whose properties changed."""
        stack, template, resolver = self._load(stack_name, parameters)
        done = self._state.setdefault(stack["StackId"], {})
        self._add_overrides(resolver, stack["StackId"])
        outcomes: list[Outcome] = []
        for logical_id in self._in_dependency_order(template, resolver):
            previous = done.get(logical_id)
            properties = _as_cfn_strings(resolver.resolve(template["Resources"][logical_id]["Properties"]))
            if previous is None or previous["ResourceProperties"] == properties:
                continue
            request = self._request("Update", stack, template, logical_id, properties)
            request["PhysicalResourceId"] = previous["PhysicalResourceId"]
            request["OldResourceProperties"] = previous["ResourceProperties"]
            outcome = self._send(request, forward=False)
            outcomes.append(outcome)
            if not outcome.ok or outcome.response is None:
                break
            replaced = outcome.response.physical_resource_id != previous["PhysicalResourceId"]
            done[logical_id] = {**previous, "PhysicalResourceId": outcome.response.physical_resource_id,
                                "ResourceProperties": properties, "Data": dict(outcome.response.data)}
            self._save()
            self._add_overrides(resolver, stack["StackId"])
            self._update_dependent_functions(template, resolver, logical_id)
            if replaced:  # CloudFormation deletes the old physical resource after a replacement
                outcomes.append(self._send_delete(stack, logical_id, previous))
        return outcomes

    def delete(self, stack_name: str) -> list[Outcome]:
        """Send Delete for each custom resource created through the bridge, in reverse creation order."""
        stack = self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        done = self._state.get(stack["StackId"], {})
        outcomes = [self._send_delete(stack, logical_id, done[logical_id]) for logical_id in reversed(done)]
        self._state.pop(stack["StackId"], None)
        self._save()
        return outcomes

    def delete_stack(self, stack_name: str) -> Deletion:
        """Delete the custom resources first (their Lambdas still exist), then the stack in moto.

        moto's own stack deletion can fail where AWS's would not (e.g. "DeleteConflict" for a role with
        a managed policy attached): that is reported in `stack_error`, after the Delete requests ran.
        """
        outcomes = self.delete(stack_name)
        try:
            self.cfn.delete_stack(StackName=stack_name)
        except self.cfn.exceptions.ClientError as exc:
            return Deletion(tuple(outcomes), f"moto could not delete stack {stack_name}: {exc}")
        return Deletion(tuple(outcomes), None)

    # --- internals --------------------------------------------------------------------------------

    def _load(
        self, stack_name: str, parameters: Mapping[str, str] | None
    ) -> tuple[dict[str, Any], Mapping[str, Any], Resolver]:
        deployed = load_stack(self.cfn, self.clients, self.region, self.account, stack_name, parameters,
                              self.extra_refs)
        return dict(deployed.description), deployed.template, deployed.resolver

    def _add_overrides(self, resolver: Resolver, stack_id: str) -> None:
        for logical_id, record in self._state.get(stack_id, {}).items():
            resolver.overrides[(logical_id, "Ref")] = record["PhysicalResourceId"]
            for key, value in record["Data"].items():
                resolver.overrides[(logical_id, key)] = value

    @staticmethod
    def _in_dependency_order(template: Mapping[str, Any], resolver: Resolver) -> list[str]:
        resources = template.get("Resources", {})
        customs = [
            lid for lid, r in resources.items()
            if str(r.get("Type", "")).startswith(CUSTOM_TYPES) and lid in resolver.physical_ids
        ]
        ordered: list[str] = []
        while len(ordered) < len(customs):
            progress = False
            for lid in customs:
                if lid in ordered:
                    continue
                needs = [o for o in customs if o != lid and o not in ordered and (
                    references(resources[lid], o) or o in _depends_on(resources[lid]))]
                if not needs:
                    ordered.append(lid)
                    progress = True
            if not progress:
                raise CustomResourceError(f"custom resources depend on each other in a cycle: {customs}")
        return ordered

    def _request(
        self, request_type: str, stack: Mapping[str, Any], template: Mapping[str, Any], logical_id: str,
        properties: Mapping[str, Any],
    ) -> dict[str, Any]:
        return {
            "RequestType": request_type,
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": self.endpoint.response_url(self.region, stack["StackId"]),
            "StackId": stack["StackId"],
            "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": logical_id,
            "ResourceType": template["Resources"][logical_id]["Type"],
            "ResourceProperties": dict(properties),
        }

    def _send_delete(self, stack: Mapping[str, Any], logical_id: str, record: Mapping[str, Any]) -> Outcome:
        properties = record["ResourceProperties"]
        request = {
            "RequestType": "Delete",
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": self.endpoint.response_url(self.region, stack["StackId"]),
            "StackId": stack["StackId"],
            "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": logical_id,
            "ResourceType": record["ResourceType"],
            "PhysicalResourceId": record["PhysicalResourceId"],
            "ResourceProperties": properties,
        }
        return self._send(request, forward=False)

    def _send(self, request: dict[str, Any], *, forward: bool) -> Outcome:
        self.endpoint.expect(request["RequestId"], forward=forward)
        invocation = self.runner.invoke(request["ServiceToken"], request)
        response = self.endpoint.wait(request["RequestId"], self.answer_timeout)
        return Outcome(request["LogicalResourceId"], request["RequestType"], request, invocation, response)

    def _update_dependent_functions(
        self, template: Mapping[str, Any], resolver: Resolver, logical_id: str
    ) -> tuple[str, ...]:
        """Give Lambda functions whose environment uses the custom resource the resolved values.

        moto created them at once, with the custom resource's attributes still empty.
        """
        lam = self.clients("lambda")
        updated: list[str] = []
        for lid, resource in template.get("Resources", {}).items():
            if resource.get("Type") != "AWS::Lambda::Function" or lid not in resolver.physical_ids:
                continue
            environment = resource.get("Properties", {}).get("Environment")
            if environment is None or not references(environment, logical_id):
                continue
            variables = _as_cfn_strings(resolver.resolve(environment).get("Variables", {}))
            lam.update_function_configuration(
                FunctionName=resolver.physical_ids[lid], Environment={"Variables": variables}
            )
            updated.append(resolver.physical_ids[lid])
        return tuple(updated)

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(self._state, indent=2))


def _depends_on(resource: Mapping[str, Any]) -> list[str]:
    depends = resource.get("DependsOn", [])
    return [depends] if isinstance(depends, str) else list(depends)


def outcome_summary(outcome: Outcome) -> dict[str, Any]:
    """A JSON-friendly view of an outcome (for the demo's status output and logs)."""
    return {
        "logical_id": outcome.logical_id,
        "request_type": outcome.request_type,
        "ok": outcome.ok,
        "message": outcome.message,
        "response": asdict(outcome.response) if outcome.response else None,
        "log_file": str(outcome.invocation.log_file),
        "updated_functions": list(outcome.updated_functions),
    }

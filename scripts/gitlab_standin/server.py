"""The HTTP side: a ThreadingHTTPServer on 127.0.0.1 serving the API under /api/v4, git smart HTTP
(clone, fetch and push, through `git http-backend`) at each project's http_url_to_repo, read-only web
pages for pipelines, job logs, merge requests and environments (web.py), and admin endpoints under
/-/standin/ for tests (faults, reset, groups, request log). Tokens are never logged.

Authentication as GitLab does it:
- API: `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>`; a missing or wrong token is 401
  (https://docs.gitlab.com/api/rest/authentication/). A project access token reaches `/user` and its own
  project only (others: 404 as if absent, non-project routes 403), and its scopes decide the methods:
  `read_api` reads, `api` everything (403 `insufficient_scope` otherwise).
- Git over HTTPS: HTTP Basic with any username (`oauth2`, `gitlab-ci-token`, ...) and the token as the
  password (https://docs.gitlab.com/user/profile/personal_access_tokens/#clone-repository-using-personal-access-token).
  Without valid credentials GitLab answers 401 with `WWW-Authenticate: Basic realm="GitLab"`, so git asks
  for them; private projects need them to clone, every project to push. A token without the scope or
  role for the operation gets 403 with GitLab's message. The repository's pre-receive hook applies the
  protected-branch rules with the pusher's level (models.Protection). After a push, receive-pack's
  post-receive hook prints GitLab's "To create a merge request for <branch>, visit: ..." (or "View merge
  request ...") lines, and the push is handled as GitLab's PostReceive worker does, after git has its answer
  (models.Backend.pushed).
Left out: sessions (the web pages need no sign-in, which GitLab's would), SSH, deploy keys and tokens.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import urls, web
from .exceptions import Forbidden, InsufficientScope, NotFound, RouteNotFound, StandinError, Unauthorized
from .faults import Fault, FaultInjector
from .gitrepo import ZERO_SHA
from .models import Backend, Principal, Project, effective_level
from .responses import Request, Response
from .runner import PipelineRunner

API_PREFIX = "/api/v4"
ADMIN_PREFIX = "/-/standin"
_GIT_PATH = re.compile(r"^/(?P<path>.+?)\.git/(?P<rest>info/refs|git-upload-pack|git-receive-pack)$")
_MAX_LOG = 5000
_PROJECT_ROUTE = re.compile(r"^/projects/(?P<id>[^/]+)(/|$)")
GIT_DENIED = (
    "HTTP Basic: Access denied. If a password was provided for Git authentication, the password was "
    "incorrect or you're required to use a token instead of a password. If a token was provided, it was "
    "either incorrect, expired, or improperly scoped.\n"
)
GIT_NOT_FOUND = (
    "The project you were looking for could not be found or you don't have permission to view it.\n"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: Standin) -> None:
        self.standin = standin
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.standin.verbose:
            # The request line may carry a query string: log only method and path, never headers.
            status = args[1] if len(args) > 1 else ""
            sys.stderr.write(f"standin: {self.command} {urlsplit(self.path).path} {status}\n")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        standin = self.server.standin
        split = urlsplit(self.path)
        path, method = split.path, self.command
        body = self._body()
        try:
            response = self._dispatch(standin, method, path, split.query, body)
        except StandinError as e:
            response = Response(e.status, e.body)
        except Exception:  # noqa: BLE001 - report, answer 500 like GitLab, keep serving
            traceback.print_exc(file=sys.stderr)
            response = Response(500, {"message": "500 Internal Server Error"})
        standin._record(method, path, response.status)
        self._send(response, head=method == "HEAD")

    def _dispatch(self, standin: Standin, method: str, path: str, query: str, body: bytes) -> Response:
        if path.startswith(ADMIN_PREFIX + "/"):
            return standin._admin(method, path[len(ADMIN_PREFIX):], body)
        fault = standin.faults.take(method, path)
        if fault is not None and fault.delay:
            threading.Event().wait(fault.delay)
        if fault is not None and fault.status is not None:
            if fault.after:
                with contextlib.suppress(StandinError):
                    self._serve_normally(standin, method, path, query, body)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return Response(fault.status, fault.body, headers)
        return self._serve_normally(standin, method, path, query, body)

    def _serve_normally(self, standin: Standin, method: str, path: str, query: str, body: bytes) -> Response:
        if path.startswith(API_PREFIX + "/"):
            token = self.headers.get("PRIVATE-TOKEN") or ""
            auth = self.headers.get("Authorization") or ""
            if not token and auth.lower().startswith("bearer "):
                token = auth[7:].strip()
            api_path = path[len(API_PREFIX):]
            # The trigger endpoint authenticates by the trigger token in its body, not a user's token.
            trigger_call = method == "POST" and urls.TOKEN_IN_BODY.match(api_path)
            principal = None if trigger_call else standin.backend.authenticate(token)
            if principal is None and not trigger_call:
                raise Unauthorized()
            found = urls.match(method, api_path)
            if found is None:
                raise RouteNotFound()
            if principal is not None:
                authorize(standin.backend, principal, method, api_path)
            handler, groups = found
            host = self.headers.get("Host") or f"127.0.0.1:{standin.port}"
            base_url = standin.external_url or f"http://{host}"
            request = Request(method, path, parse_qs(query, keep_blank_values=True), body,
                              self.headers, base_url, principal=principal)
            return handler(standin.backend, request, groups)
        git = _GIT_PATH.match(path)
        if git:
            return standin._git_http(method, git.group("path"), git.group("rest"), query, body, self.headers)
        if method in ("GET", "HEAD"):
            page = web.page(standin.backend, path, parse_qs(query))
            if page is not None:
                return page
        raise RouteNotFound()

    def _send(self, response: Response, head: bool) -> None:
        payload = b"" if response.status in (204, 304) else response.payload()
        self.send_response(response.status)
        if payload or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head and payload:
            self.wfile.write(payload)


class Standin:
    """A stand-in serving on 127.0.0.1 as soon as it is constructed (port 0: any free port).

    `groups` pre-creates groups by full path (e.g. "ml-team"); `runner` executes pipelines (None:
    pipelines only record "created"); `pipelines_on_push` (default: when a runner is given) starts a
    "push" pipeline for each commit, as GitLab does; `new_project_override_role` is the
    ci_pipeline_variables_minimum_override_role new projects get ("no_one_allowed" like GitLab.com);
    `external_url` is the base of the URLs the API returns when clients reach it through a proxy
    (settable later with `set_external_url`); `job_log_dir` keeps every finished job's trace as a file.
    Stop with `.stop()` or a `with` block.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        data_dir: str | Path | None = None,
        tokens: Sequence[str] | None = None,
        groups: Iterable[str] = (),
        runner: PipelineRunner | None = None,
        pipelines_on_push: bool | None = None,
        new_project_override_role: str = "no_one_allowed",
        verbose: bool = False,
        external_url: str | None = None,
        job_log_dir: str | Path | None = None,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="gitlab-standin-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.tokens: tuple[str, ...] = tuple(tokens) if tokens else (f"glpat-{secrets.token_urlsafe(15)}",)
        self.verbose = verbose
        self.faults = FaultInjector()
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()
        self.backend = Backend(
            self.data_dir, tokens=self.tokens, groups=groups, runner=runner,
            pipelines_on_push=pipelines_on_push, new_project_override_role=new_project_override_role,
            job_log_dir=Path(job_log_dir) if job_log_dir else None,
        )
        self._server = _Server(("127.0.0.1", port), self)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.external_url: str | None = None
        self.set_external_url(external_url)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="gitlab-standin",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def set_external_url(self, external_url: str | None) -> None:
        """The URL clients reach the stand-in at (e.g. https through a TLS terminator in front of it).

        Used for web_url, http_url_to_repo, pagination links and CI_SERVER_URL; None: the plain http url.
        """
        self.external_url = external_url.rstrip("/") if external_url else None
        self.backend.base_url = self.external_url or self.url

    @property
    def token(self) -> str:
        return self.tokens[0]

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    # --- test controls (also reachable over HTTP under /-/standin/) ------------------------------
    def add_fault(self, path_regex: str, status: int | None = None, **kwargs: Any) -> Fault:
        return self.faults.add(Fault(path_regex, status, **kwargs))

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset(self) -> None:
        self.faults.clear()
        self.backend.wait_idle()
        self.backend.reset()
        with self._log_lock:
            self._log.clear()

    def create_group(self, full_path: str, name: str | None = None) -> dict[str, Any]:
        return self.backend.create_group(full_path, name).to_json(self.url)

    def requests(self, method: str | None = None, path_regex: str | None = None) -> list[dict[str, Any]]:
        """Requests served so far (method, path, status), oldest first; filters are optional."""
        with self._log_lock:
            log = list(self._log)
        return [e for e in log if (method is None or e["method"] == method)
                and (path_regex is None or re.search(path_regex, e["path"]))]

    def _record(self, method: str, path: str, status: int) -> None:
        if path.startswith(ADMIN_PREFIX):
            return
        with self._log_lock:
            self._log.append({"method": method, "path": path, "status": status})
            del self._log[:-_MAX_LOG]

    def stop(self) -> None:
        """Stop serving at once (connections are refused afterwards); remove a temporary data dir."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self.backend.wait_idle(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Standin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- admin over HTTP ---------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: bytes) -> Response:
        data: Any = json.loads(body) if body.strip() else {}
        if (method, path) == ("GET", "/health"):
            return Response(200, {"status": "ok"})
        if (method, path) == ("POST", "/faults"):
            fields = ("path_regex", "status", "method", "count", "retry_after", "body", "delay", "after")
            fault = self.add_fault(**{k: data[k] for k in fields if k in data})
            return Response(201, fault.to_json())
        if (method, path) == ("GET", "/faults"):
            return Response(200, [f.to_json() for f in self.faults.list()])
        if (method, path) == ("DELETE", "/faults"):
            self.clear_faults()
            return Response(204, b"")
        if (method, path) == ("POST", "/reset"):
            self.reset()
            return Response(204, b"")
        if (method, path) == ("POST", "/groups"):
            return Response(201, self.create_group(data["path"], data.get("name")))
        if (method, path) == ("GET", "/requests"):
            return Response(200, self.requests())
        raise RouteNotFound()

    # --- git smart HTTP ----------------------------------------------------------------------------
    def _git_principal(self, headers: Any) -> Principal | None:
        """The principal of HTTP Basic credentials: any username, the token as the password."""
        auth = headers.get("Authorization") or ""
        if not auth.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return self.backend.authenticate(password)

    def _git_http(self, method: str, full_path: str, rest: str, query: str, body: bytes,
                  headers: Any) -> Response:
        push = rest == "git-receive-pack" or "service=git-receive-pack" in query
        principal = self._git_principal(headers)
        challenge = Response(401, GIT_DENIED.encode(), {"WWW-Authenticate": 'Basic realm="GitLab"'},
                             "text/plain")
        try:
            project: Project | None = self.backend.project(unquote(full_path))
        except StandinError:
            project = None
        if project is not None and principal is not None and principal.project_id not in (None, project.id):
            project = None  # another project's token sees nothing here
        if project is None:
            return challenge if principal is None else Response(404, GIT_NOT_FOUND.encode(), {}, "text/plain")
        if push:
            allowed = principal is not None and principal.may_push_code() and not project.archived
        else:
            allowed = project.visibility == "public" or (principal is not None and principal.may_read_code())
        if not allowed:
            if principal is None:
                return challenge
            what = "push code to" if push else "download code from"
            return Response(403, f"You are not allowed to {what} this project.\n".encode(), {}, "text/plain")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(project.repo.path.parent),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{project.repo.path.name}/{rest}",
            "REQUEST_METHOD": method,
            "QUERY_STRING": query,
            "CONTENT_TYPE": headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": headers.get("Git-Protocol") or "",
            "HTTP_CONTENT_ENCODING": headers.get("Content-Encoding") or "",
        }
        before: dict[str, str] = {}
        if push:
            assert principal is not None
            env["REMOTE_USER"] = str(principal.user.get("username"))
            env.update(self._hook_environment(project))
            env["STANDIN_PROTECTED"] = " ".join(
                f"{name}={branch.push_access_level}" for name, branch in project.protected_branches.items()
            )
            env["STANDIN_ACCESS_LEVEL"] = str(effective_level(principal))
            before = project.repo.branches()
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                                check=False, timeout=300)
        if push and method == "POST":
            after = project.repo.branches()
            updates = [(b, before.get(b, ZERO_SHA), after.get(b, ZERO_SHA))
                       for b in sorted(set(before) | set(after)) if before.get(b) != after.get(b)]
            if updates:
                pushed = project
                self.backend.in_background(lambda: self.backend.pushed(pushed, updates), f"push-{project.id}")
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status, content_type, extra = 200, "application/octet-stream", {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key.lower() == "content-type":
                content_type = value.strip()
            elif key and key.lower() not in ("content-length", "expires", "pragma"):
                extra[key] = value.strip()
        return Response(status, payload, extra, content_type)

    def _hook_environment(self, project: Project) -> dict[str, str]:
        """What the post-receive hook prints GitLab's merge request hints from."""
        web_url = f"{self.backend.base_url}/{project.full_path}"
        opened = self.backend.list_merge_requests(project, state="opened")
        return {
            "STANDIN_PROJECT_URL": web_url,
            "STANDIN_DEFAULT_BRANCH": project.default_branch,
            "STANDIN_OPEN_MRS": " ".join(f"{mr.source_branch}={web_url}/-/merge_requests/{mr.iid}"
                                         for mr in reversed(opened)),
        }


def authorize(backend: Backend, principal: Principal, method: str, api_path: str) -> None:
    """Scopes and the project a token is bound to, checked before any handler runs."""
    if method in ("GET", "HEAD"):
        if not principal.may_read_api():
            raise InsufficientScope("read_api api")
    elif not principal.may_write_api():
        raise InsufficientScope("api")
    if principal.project_id is None or api_path.rstrip("/") in ("/user", "/personal_access_tokens/self"):
        return
    found = _PROJECT_ROUTE.match(api_path)
    if found is None:
        raise Forbidden()
    if backend.project(found.group("id")).id != principal.project_id:
        raise NotFound("Project")


# Constructing a Standin starts it; the name says so at call sites.
start_standin = Standin

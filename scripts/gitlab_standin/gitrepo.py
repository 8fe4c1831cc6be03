"""A project's repository: a real bare git repository on disk, written with git's plumbing commands.

Every API commit becomes one real git commit, so `git clone` sees exactly what the API wrote (binary
files byte for byte: blobs are hashed without filters).
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .exceptions import BadRequest, NotFound

ZERO_SHA = "0" * 40
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Standin User",
    "GIT_AUTHOR_EMAIL": "standin@example.invalid",
    "GIT_COMMITTER_NAME": "Standin User",
    "GIT_COMMITTER_EMAIL": "standin@example.invalid",
}


@dataclass(frozen=True)
class FileAction:
    """One entry of the commits API's `actions` array, already validated."""

    action: str
    file_path: str
    content: bytes = b""
    previous_path: str | None = None
    execute_filemode: bool | None = None


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str
    id: str
    path: str


@dataclass(frozen=True)
class CommitInfo:
    id: str
    parent_ids: tuple[str, ...]
    title: str
    message: str
    author_name: str
    author_email: str
    authored_date: str
    committed_date: str


def decode_content(content: str, encoding: str, file_path: str) -> bytes:
    """The bytes of a commit action's `content` in `encoding` (text or base64)."""
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRequest(f"Invalid base64 content for {file_path}") from e
    if encoding in ("", "text"):
        return content.encode("utf-8")
    raise BadRequest(f"encoding does not have a valid value: {encoding}")


def validate_file_path(path: str) -> str:
    clean = path.strip("/")
    parts = clean.split("/")
    if not clean or any(p in ("", ".", "..", ".git") for p in parts) or "\0" in clean:
        raise BadRequest(f"Your changes could not be committed, because the file path {path!r} is invalid")
    return clean


class GitRepo:
    """A bare repository at `path` whose HEAD names the project's default branch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # --- plumbing -----------------------------------------------------------------------------
    def _git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        full_env = {**os.environ, **_IDENTITY, "GIT_DIR": str(self.path), **(env or {})}
        for key in ("GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
            if env is None or key not in env:
                full_env.pop(key, None)
        result = subprocess.run(
            ["git", *args], input=input, env=full_env, capture_output=True, check=False
        )
        if result.returncode != 0:
            raise GitFailed(args[0], result.stderr.decode("utf-8", "replace").strip())
        return result.stdout

    def init(self, default_branch: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(self.path)],
            check=True,
            capture_output=True,
        )
        # git http-backend serves uploads to anyone it is run for, and receive-pack only when REMOTE_USER
        # is set, which the server does after checking the token (http.receivepack's default).
        self._git("config", "http.uploadpack", "true")
        self._git("config", "receive.denyDeleteCurrent", "true")
        hooks = self.path / "hooks"
        hooks.mkdir(exist_ok=True)
        for name, script in (("pre-receive", _PRE_RECEIVE), ("post-receive", _POST_RECEIVE)):
            (hooks / name).write_text(script)
            (hooks / name).chmod(0o755)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def set_head(self, branch: str) -> None:
        self._git("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    # --- reading ------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str | None:
        """The commit sha `ref` (branch, tag or sha) names, or None."""
        if not ref or ref.startswith("-"):
            return None
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            try:
                out = self._git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
                return out.decode().strip()
            except GitFailed:
                continue
        return None

    def branches(self) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/")
        pairs = (line.split(" ", 1) for line in out.decode().splitlines() if line)
        return {name: sha for name, sha in pairs}

    def is_empty(self) -> bool:
        return not self.branches()

    def set_ref(self, ref: str, sha: str) -> None:
        self._git("update-ref", ref, sha)

    def delete_ref(self, ref: str) -> None:
        self._git("update-ref", "-d", ref)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", ancestor, descendant)
        except GitFailed:
            return False
        return True

    def merge_base(self, one: str, other: str) -> str | None:
        try:
            return self._git("merge-base", one, other).decode().strip() or None
        except GitFailed:
            return None

    def merge_commit(self, target: str, source: str, message: str, target_branch: str) -> str | None:
        """A merge commit of `source` into `target` (parents target, source) moved onto `target_branch`;
        None when the two conflict. Uses `git merge-tree --write-tree` (git 2.38+): no work tree needed."""
        try:
            tree = self._git("merge-tree", "--write-tree", target, source).decode().split()[0]
        except GitFailed:
            return None
        sha = self._git("commit-tree", tree, "-p", target, "-p", source, "-F", "-",
                        input=message.encode("utf-8")).decode().strip()
        self._git("update-ref", f"refs/heads/{target_branch}", sha, target)
        return sha

    def delete_branch(self, branch: str) -> None:
        self._git("update-ref", "-d", f"refs/heads/{branch}")

    def create_branch(self, branch: str, sha: str) -> None:
        self._git("update-ref", f"refs/heads/{branch}", sha, ZERO_SHA)

    def commit_info(self, sha: str) -> CommitInfo:
        fmt = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cI%x00%B"
        out = self._git("show", "-s", f"--format={fmt}", sha).decode("utf-8", "replace")
        h, parents, an, ae, ad, cd, body = out.split("\0", 6)
        message = body.rstrip("\n")
        return CommitInfo(h, tuple(parents.split()), message.split("\n", 1)[0], message, an, ae, ad, cd)

    def log(self, ref: str, path: str | None = None) -> list[str]:
        args = ["rev-list", ref]
        if path:
            args += ["--", path]
        return self._git(*args).decode().split()

    def tree(self, sha: str, path: str, recursive: bool) -> list[TreeEntry]:
        clean = path.strip("/")
        treeish = f"{sha}:{clean}" if clean else f"{sha}^{{tree}}"
        try:
            kind = self._git("cat-file", "-t", treeish).decode().strip()
        except GitFailed:
            raise NotFound("Tree") from None
        if kind != "tree":
            raise NotFound("Tree")
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args += ["-r", "-t"]
        out = self._git(*args, treeish)
        entries = []
        for record in out.decode("utf-8", "surrogateescape").split("\0"):
            if not record:
                continue
            meta, name = record.split("\t", 1)
            mode, kind, oid = meta.split()
            entries.append(TreeEntry(mode, kind, oid, f"{clean}/{name}" if clean else name))
        return entries

    def blob(self, sha: str, file_path: str) -> tuple[str, bytes]:
        """(blob id, bytes) of `file_path` at commit `sha`; NotFound if it is not a file there."""
        spec = f"{sha}:{file_path.strip('/')}"
        try:
            kind = self._git("cat-file", "-t", spec).decode().strip()
        except GitFailed:
            raise NotFound("File") from None
        if kind != "blob":
            raise NotFound("File")
        oid = self._git("rev-parse", spec).decode().strip()
        return oid, self._git("cat-file", "blob", oid)

    # --- writing ------------------------------------------------------------------------------
    def commit(
        self,
        branch: str,
        message: str,
        actions: list[FileAction],
        parent: str | None,
        author: tuple[str, str] | None = None,
    ) -> str:
        """Apply `actions` on top of `parent` (None: an orphan commit), move `branch`, return the sha."""
        with tempfile.TemporaryDirectory(prefix="standin-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self._git("read-tree", parent, env=env)
            existing = self._index_paths(env)
            for act in actions:
                self._apply(act, existing, env)
            tree = self._git("write-tree", env=env).decode().strip()
        commit_env = dict(_IDENTITY)
        if author:
            commit_env["GIT_AUTHOR_NAME"], commit_env["GIT_AUTHOR_EMAIL"] = author
        args = ["commit-tree", tree, "-F", "-"]
        if parent:
            args[2:2] = ["-p", parent]
        sha = self._git(*args, input=message.encode("utf-8"), env=commit_env).decode().strip()
        old = self.branches().get(branch, "0" * 40)
        self._git("update-ref", f"refs/heads/{branch}", sha, old)
        return sha

    def _index_paths(self, env: dict[str, str]) -> dict[str, str]:
        out = self._git("ls-files", "-z", "--stage", env=env)
        paths = {}
        for record in out.decode("utf-8", "surrogateescape").split("\0"):
            if record:
                meta, name = record.split("\t", 1)
                paths[name] = meta.split()[0]
        return paths

    def _apply(self, act: FileAction, existing: dict[str, str], env: dict[str, str]) -> None:
        path = act.file_path
        if act.action == "create":
            if path in existing:
                raise BadRequest("A file with this name already exists")
            self._add(path, act.content, "100644", env)
            existing[path] = "100644"
        elif act.action == "update":
            if path not in existing:
                raise BadRequest("A file with this name doesn't exist")
            self._add(path, act.content, existing[path], env)
        elif act.action == "delete":
            if path not in existing:
                raise BadRequest("A file with this name doesn't exist")
            self._remove(path, env)
            existing.pop(path)
        elif act.action == "move":
            source = act.previous_path or ""
            if source not in existing:
                raise BadRequest("A file with this name doesn't exist")
            if path in existing:
                raise BadRequest("A file with this name already exists")
            mode = existing.pop(source)
            content = act.content if act.content else self._git("cat-file", "blob", f":{source}", env=env)
            self._remove(source, env)
            self._add(path, content, mode, env)
            existing[path] = mode
        elif act.action == "chmod":
            if path not in existing:
                raise BadRequest("A file with this name doesn't exist")
            mode = "100755" if act.execute_filemode else "100644"
            oid = self._git("rev-parse", f":{path}", env=env).decode().strip()
            self._git("update-index", "--cacheinfo", f"{mode},{oid},{path}", env=env)
            existing[path] = mode
        else:
            raise BadRequest(f"Unknown action '{act.action}'")

    def _remove(self, path: str, env: dict[str, str]) -> None:
        # Mode 0 through --index-info drops the entry; --force-remove would need a work tree.
        self._git("update-index", "--index-info", input=f"0 {'0' * 40}\t{path}\n".encode(), env=env)

    def _add(self, path: str, content: bytes, mode: str, env: dict[str, str]) -> None:
        oid = self._git("hash-object", "-w", "--no-filters", "--stdin", input=content).decode().strip()
        self._git("update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}", env=env)


# Protected branches refuse a push below their push level, any force push and any delete, with GitLab's
# messages (models.Protection). STANDIN_PROTECTED is "branch=level ..."; STANDIN_ACCESS_LEVEL the pusher's.
_PRE_RECEIVE = """#!/bin/sh
zero=0000000000000000000000000000000000000000
refuse() { echo "GitLab: $1" >&2; status=1; }
status=0
while read -r old new ref; do
  branch=${ref#refs/heads/}
  [ "$branch" != "$ref" ] || continue
  required=""
  for pair in $STANDIN_PROTECTED; do
    [ "${pair%=*}" = "$branch" ] && required=${pair##*=}
  done
  [ -n "$required" ] || continue
  if [ "$new" = "$zero" ]; then
    refuse "You can only delete protected branches using the web interface."; continue
  fi
  if [ "$required" = 0 ] || [ "${STANDIN_ACCESS_LEVEL:-0}" -lt "$required" ]; then
    refuse "You are not allowed to push code to protected branches on this project."; continue
  fi
  if [ "$old" != "$zero" ] && ! git merge-base --is-ancestor "$old" "$new"; then
    refuse "You are not allowed to force push code to a protected branch on this project."
  fi
done
exit $status
"""

# GitLab's hints after a push to a branch other than the default one; git relays hook output to the
# pusher as "remote:" lines. The server sets the STANDIN_* variables for receive-pack.
_POST_RECEIVE = """#!/bin/sh
[ -n "$STANDIN_PROJECT_URL" ] || exit 0
while read -r old new ref; do
  branch=${ref#refs/heads/}
  [ "$branch" != "$ref" ] || continue
  [ "$new" != "0000000000000000000000000000000000000000" ] || continue
  [ "$branch" != "$STANDIN_DEFAULT_BRANCH" ] || continue
  url=""
  for pair in $STANDIN_OPEN_MRS; do
    [ "${pair%%=*}" = "$branch" ] && url=${pair#*=}
  done
  echo
  if [ -n "$url" ]; then
    echo "View merge request for $branch:"
    echo "  $url"
  else
    echo "To create a merge request for $branch, visit:"
    echo "  $STANDIN_PROJECT_URL/-/merge_requests/new?merge_request%5Bsource_branch%5D=$branch"
  fi
  echo
done
"""


class GitFailed(RuntimeError):
    def __init__(self, command: str, stderr: str) -> None:
        super().__init__(f"git {command} failed: {stderr}")

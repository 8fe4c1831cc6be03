"""Seed repositories arrive as zips (files at the zip root); turn them into GitLab commit actions."""

from __future__ import annotations

import base64
import hashlib
import io
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from mlops_common.errors import ConfigError
from mlops_common.gitlab_api import TreeEntry

_MAX_SEED_BYTES = 50 * 1024 * 1024
EXECUTABLE_MODE = "100755"


@dataclass(frozen=True)
class SeedFile:
    path: str
    content: bytes
    executable: bool = False

    @property
    def blob_id(self) -> str:
        """The git blob id GitLab reports for identical content (sha1 of 'blob <size>\\0' + content)."""
        header = f"blob {len(self.content)}\0".encode()
        return hashlib.sha1(header + self.content, usedforsecurity=False).hexdigest()

    @property
    def is_text(self) -> bool:
        if b"\0" in self.content:
            return False
        try:
            self.content.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def action(self, kind: str) -> dict[str, Any]:
        """A commits-API action: text as text, anything else base64-encoded."""
        result: dict[str, Any] = {"action": kind, "file_path": self.path}
        if self.is_text:
            result.update(content=self.content.decode("utf-8"), encoding="text")
        else:
            result.update(content=base64.b64encode(self.content).decode("ascii"), encoding="base64")
        return result

    def chmod_action(self) -> dict[str, Any]:
        return {"action": "chmod", "file_path": self.path, "execute_filemode": self.executable}


@dataclass(frozen=True)
class Seed:
    name: str
    files: tuple[SeedFile, ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.path}\0{int(f.executable)}\0{f.blob_id}\n".encode())
        return h.hexdigest()

    def create_actions(self) -> list[dict[str, Any]]:
        """GitLab ignores execute_filemode on create: executables get a chmod in the same commit."""
        creates = [f.action("create") for f in self.files]
        return creates + [f.chmod_action() for f in self.files if f.executable]

    def sync_actions(self, tree: Iterable[TreeEntry]) -> list[dict[str, Any]]:
        """Actions that make the repository hold the seed's files (other files are left alone)."""
        have = {entry.path: entry for entry in tree}
        actions: list[dict[str, Any]] = []
        chmods: list[dict[str, Any]] = []
        for f in self.files:
            entry = have.get(f.path)
            if entry is None:
                actions.append(f.action("create"))
                if f.executable:
                    chmods.append(f.chmod_action())
                continue
            if entry.blob_id != f.blob_id:
                actions.append(f.action("update"))
            if (entry.mode == EXECUTABLE_MODE) != f.executable:
                chmods.append(f.chmod_action())
        return actions + chmods


def read_seed_zip(data: bytes, name: str) -> Seed:
    """Every file of the zip (directories skipped), sorted by path; unsafe paths are refused."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ConfigError(f"seed {name} is not a zip file: rebuild and upload the bundle (init.sh)") from None
    files: list[SeedFile] = []
    total = 0
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
                raise ConfigError(f"seed {name} holds an unsafe path {info.filename!r}: rebuild the bundle")
            total += info.file_size
            if total > _MAX_SEED_BYTES:
                raise ConfigError(
                    f"seed {name} is larger than {_MAX_SEED_BYTES // 1024 // 1024} MiB unpacked"
                )
            mode = info.external_attr >> 16
            files.append(SeedFile(str(path), archive.read(info), bool(mode & stat.S_IXUSR)))
    if not files:
        raise ConfigError(f"seed {name} is empty: rebuild and upload the bundle (init.sh)")
    return Seed(name, tuple(sorted(files, key=lambda f: f.path)))

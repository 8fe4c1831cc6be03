"""A throw-away certificate authority for the sandbox's HTTPS endpoints on 127.0.0.1.

Reproduces: servers with certificates that clients verify normally. Lambdas run with
`SSL_CERT_FILE=<ca.pem>` (Python's default TLS context honours it), so product code keeps full
verification and needs no switch. The CA and its certificates are made by `trustme` (built for exactly
this); the CA is kept on disk so that the sandbox's separate processes (servers, CI jobs, git) share it.
Leaves out: revocation, intermediates, any public trust.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

_VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class ServerCertificate:
    """PEM files of one server certificate (chain = leaf + CA) and its private key."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@dataclass(frozen=True)
class LocalCA:
    """A CA whose certificate (`ca_file`) clients trust and whose key signs server certificates."""

    directory: Path
    ca_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path, *, name: str = "MLOps sandbox local CA") -> LocalCA:
        """Generate a new CA in `directory` (made if missing); a CA already there is reused."""
        directory.mkdir(parents=True, exist_ok=True)
        ca_file, key_file = directory / "ca.pem", directory / "ca-key.pem"
        if ca_file.exists() and key_file.exists():
            return cls(directory, ca_file, key_file)
        ca = trustme.CA(organization_name=name)
        _write_private(key_file, ca.private_key_pem.bytes())
        ca_file.write_bytes(ca.cert_pem.bytes())
        return cls(directory, ca_file, key_file)

    def issue(self, name: str, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ServerCertificate:
        """A server certificate for `hosts` (IP addresses and DNS names), written next to the CA."""
        ca_pem = self.ca_file.read_bytes()
        ca = trustme.CA.from_pem(ca_pem, self.key_file.read_bytes())
        now = dt.datetime.now(dt.UTC)
        leaf = ca.issue_cert(
            *hosts, common_name=hosts[0], not_before=now - dt.timedelta(minutes=5), not_after=now + _VALIDITY
        )
        cert_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}-key.pem"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + ca_pem)
        _write_private(key_file, leaf.private_key_pem.bytes())
        return ServerCertificate(cert_file, key_file)


class TlsTerminator:
    """HTTPS in front of a plain-HTTP server on 127.0.0.1: decrypts and pipes bytes to `target_port`.

    For stand-ins that only speak HTTP (the GitLab API stand-in) where product code insists on https.
    The backend sees the client's Host header unchanged; it does not know the scheme was https.
    """

    def __init__(self, certificate: ServerCertificate, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._context = certificate.server_context()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tls-terminator", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"https://{self._target[0]}:{self.port}"

    def start(self) -> TlsTerminator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            client.settimeout(30)
            secure = self._context.wrap_socket(client, server_side=True)
            backend = socket.create_connection(self._target, timeout=30)
        except OSError:
            client.close()
            return
        _relay(secure, backend, self._stopped)


_IDLE_SECONDS = 120.0


def _relay(secure: ssl.SSLSocket, backend: socket.socket, stopped: threading.Event) -> None:
    """Pipe bytes both ways from ONE thread: an SSL socket must never be read and written by two threads
    at once (OpenSSL objects are not thread-safe; doing so truncated responses under load)."""
    idle = 0.0
    try:
        while not stopped.is_set():
            ready: list[socket.socket]
            if secure.pending():
                ready = [secure]
            else:
                ready, _, _ = select.select([secure, backend], [], [], 0.5)
            if not ready:
                idle += 0.5
                if idle > _IDLE_SECONDS:
                    return
                continue
            idle = 0.0
            for source in ready:
                chunk = source.recv(65536)
                if not chunk:
                    return
                (backend if source is secure else secure).sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (secure, backend):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

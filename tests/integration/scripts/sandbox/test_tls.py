"""The TLS terminator relays keep-alive HTTP intact under concurrent load (one thread per connection)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from scripts.sandbox.tls import LocalCA, TlsTerminator

BODY = bytes(range(256)) * 800  # 200 KiB: several TLS records per response


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        received = self.rfile.read(int(self.headers["Content-Length"]))
        payload = received + BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


def test_concurrent_keep_alive_requests_arrive_whole(tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path / "ca")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    terminator = TlsTerminator(ca.issue("echo"), server.server_address[1]).start()
    try:
        def client(n: int) -> int:
            ok = 0
            with requests.Session() as session:
                for i in range(15):
                    marker = f"{n}-{i}|".encode() * 100
                    answer = session.post(f"{terminator.url}/echo", data=marker, verify=str(ca.ca_file),
                                          timeout=20)
                    ok += answer.content == marker + BODY
            return ok

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(client, range(6))) == 6 * 15
    finally:
        terminator.stop()
        server.shutdown()
        server.server_close()

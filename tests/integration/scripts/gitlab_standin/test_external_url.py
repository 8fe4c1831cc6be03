"""The stand-in behind an HTTPS terminator: the URLs it hands out are the ones clients reach it at."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import gitlab

from scripts.gitlab_standin.testing import seed_project, standin, with_token
from scripts.sandbox.tls import LocalCA, TlsTerminator


def test_urls_use_the_external_https_url_and_clone_over_tls(tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path / "ca")
    with standin() as server:
        terminator = TlsTerminator(ca.issue("gitlab"), server.port).start()
        try:
            server.set_external_url(terminator.url + "/")
            seed_project(server, "ml-team/model-build", {"README.md": "# hello\n"})
            gl = gitlab.Gitlab(terminator.url, private_token=server.token, ssl_verify=str(ca.ca_file),
                               timeout=10)

            project = gl.projects.get("ml-team/model-build")

            assert project.http_url_to_repo == f"{terminator.url}/ml-team/model-build.git"
            assert project.web_url.startswith("https://127.0.0.1:")
            listed = gl.projects.list(per_page=1, page=1)
            assert [p.path for p in listed] == ["model-build"]
            clone = tmp_path / "clone"
            env = {**os.environ, "GIT_SSL_CAINFO": str(ca.ca_file)}
            url = with_token(project.http_url_to_repo, server.token)
            subprocess.run(["git", "clone", "-q", url, str(clone)], check=True, timeout=60, env=env)
            assert (clone / "README.md").read_text() == "# hello\n"

            server.set_external_url(None)
            assert gl.projects.get(project.id).http_url_to_repo.startswith(server.url)
        finally:
            terminator.stop()

"""schemathesis against the server's own OpenAPI spec: generated requests
(a bounded number per operation) never get a 5xx.

The watch stream is left out (it never ends by design; tests/test_http_rest.py
covers it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


from http_server import Server

MAX_EXAMPLES = "25"


def test_no_server_errors(tmp_path: Path) -> None:
    server = Server("memory:", tmp_path, "--anonymous", "write")
    try:
        with server.client() as c:
            c.put("/api/branches/main/tree/a/b", content=b"value")
            c.post("/api/branches", json={"name": "dev", "from": "main"})
        p = subprocess.run(
            ["schemathesis", "run", server.url + "/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", MAX_EXAMPLES, "--seed", "1",
             "--phases", "coverage,fuzzing", "--exclude-path-regex", "watch",
             "--request-timeout", "20"],
            capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout[-5000:] + p.stderr[-2000:]
        assert " 0 passed" not in p.stdout
    finally:
        server.stop()
    assert " 500 " not in server.log.read_text()

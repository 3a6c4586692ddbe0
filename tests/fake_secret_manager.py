"""A local stand-in for Google Secret Manager that speaks its REST protocol.

There is no Secret Manager emulator, so the tests point the real
google-cloud-secret-manager client (REST transport, plain HTTP) at this
server. It answers ``GET /v1/projects/P/secrets/S/versions/V:access`` the
way the service does, counts the reads (to prove "once per instance"), and
can be switched off to play an outage.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ACCESS = re.compile(r"/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access")


class FakeSecretManager:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}
        self.reads: list[str] = []
        self.down = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = _ACCESS.fullmatch(self.path.split("?", 1)[0])
                if fake.down:
                    return self._answer(
                        503, {"error": {"code": 503, "message": "unavailable", "status": "UNAVAILABLE"}}
                    )
                if match is None:
                    return self._answer(404, {"error": {"code": 404, "message": "no route", "status": "NOT_FOUND"}})
                project, secret, _version = match.groups()
                fake.reads.append(secret)
                value = fake.secrets.get((project, secret))
                if value is None:
                    return self._answer(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                name = f"projects/{project}/secrets/{secret}/versions/1"
                payload = {"data": base64.b64encode(value.encode()).decode()}
                return self._answer(200, {"name": name, "payload": payload})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeSecretManager:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

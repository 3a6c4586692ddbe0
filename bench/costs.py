"""What one request of the busiest routes costs in Firestore, counted (issue 13; docs/scale.md).

Run with ``.venv/bin/python -m bench.costs`` from the repo root. Not part of the tests. Against a
fresh Firestore emulator it calls each route in process (through functions-framework) once to warm
it, then once more while a gRPC interceptor on the client's channel counts the calls (round trips),
the documents asked for by ``BatchGetDocuments`` (billed reads, found or not) and the writes each
``Commit`` carries. Reads sent on the store's second channel (``store.start_read(own_connection=True)``,
started beside the credential's read) are counted too: they are RPCs of their own, though not a round
trip of their own. Loopback only; a few seconds.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import CallCounter, InProcess, free_port, interceptor, say, use_dev_defaults  # noqa: E402 - the repo root goes on the path first


class DocumentMeter(CallCounter):
    """The call counter of bench.core, also counting documents read and written."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.writes = 0

    def reset(self) -> None:
        super().reset()
        self.reads = self.writes = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.writes += len(getattr(request, "writes", ()))  # Commit
        return super().intercept_unary_unary(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self.reads += len(getattr(request, "documents", ()))  # BatchGetDocuments
        return super().intercept_unary_stream(continuation, details, request)


def install_meter() -> DocumentMeter:
    """Every Firestore channel built from now on (emulator only: the client's and the store's second
    channel, through ``store.wrap_channel``) is metered."""
    import grpc

    from shared import store

    meter = interceptor(DocumentMeter)
    store.wrap_channel(lambda channel: grpc.intercept_channel(channel, meter))
    return meter


def main() -> int:
    from scripts import emulator

    use_dev_defaults()
    meter = install_meter()
    with emulator.running(free_port()) as host:
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        app = InProcess()
        bridge = {"x-agentpack-key": os.environ["AGENTPACK_BRIDGE_KEY"]}

        def setup(route: str, body: dict[str, Any]) -> Any:
            for _ in range(5):  # a fresh emulator on a busy machine can miss the first deadlines
                status, answer = app.call(route, body, bridge)
                if status != 503:
                    break
            if status != 201:
                sys.exit(f"error: {route} answered {status}: {answer}")
            return answer

        scopes = ["agents/get", "authz:check", "authz:write"]
        agent = setup("agents/create", {"display_name": "costs", "scopes": scopes})
        key = setup("device/issue", {"agent_id": agent["agent_id"]})
        other = setup("agents/create", {"display_name": "grantee"})
        device = {"x-agentpack-device-key": key["device_key"]}
        pair = f"{urllib.parse.quote(agent['agent_id'], safe='')}:{urllib.parse.quote(key['device_key'], safe='')}"
        basic = {
            "Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii"),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        issued: list[str] = []

        def token() -> int:
            form = "grant_type=client_credentials"
            return int(app.client("oauth_token").post("/", data=form, headers=basic).status_code)

        def issue() -> int:
            status, answer = app.call("device/issue", {}, device)
            issued.append(answer["key_id"])
            return status

        def revoke() -> int:
            return app.call("device/revoke", {"key_id": issued[-1]}, device)[0]

        grantee_key = setup("device/issue", {"agent_id": other["agent_id"]})
        grant = {"to_agent": other["agent_id"], "scope": ["secrets/get"], "ttl_seconds": 3600}
        status, delegation = app.call("delegate", grant, device)
        if status != 201:
            sys.exit(f"error: delegate answered {status}: {delegation}")
        delegated = {
            "x-agentpack-device-key": grantee_key["device_key"],
            "x-agentpack-delegation": delegation["delegation_id"],
        }
        settings_values = iter(range(400, 500))

        def report_leak() -> int:
            leaked = setup("device/issue", {"agent_id": other["agent_id"]})  # a live key to report
            meter.reset()  # count the report alone
            answer = app.client("keys_report_leak").post("/", json={"keys": [leaked["device_key"]]})
            return int(answer.status_code)

        def report_unknown() -> int:
            junk = {"keys": ["not a key"]}
            return int(app.client("keys_report_leak").post("/", json=junk).status_code)

        subject, resource = f"agent:{agent['agent_id']}", "doc:costs"
        check = {"subject": subject, "action": "read", "resource": resource}
        routes: list[tuple[str, Callable[[], int]]] = [
            ("oauth/token client_credentials", token),
            ("device/issue (key, for itself)", issue),
            ("device/revoke (key)", revoke),
            ("secrets/put (key)", lambda: app.call("secrets/put", {"name": "n", "value": "v"}, device)[0]),
            ("secrets/get (key)", lambda: app.call("secrets/get", {"name": "n"}, device)[0]),
            ("secrets/get (delegated)", lambda: app.call("secrets/get", {"name": "n"}, delegated)[0]),
            ("agents/get (key)", lambda: app.call("agents/get", {}, device)[0]),
            (
                "delegate (key)",
                lambda: app.call(
                    "delegate", {"to_agent": other["agent_id"], "scope": ["secrets/get"], "ttl_seconds": 600}, device
                )[0],
            ),
            ("settings/list (key)", lambda: app.call("settings/list", {}, device)[0]),
            (
                "authz/check read (bridge)",
                lambda: app.call("authz/check", {**check, "tenant_id": "default"}, bridge)[0],
            ),
            ("authz/check read (key)", lambda: app.call("authz/check", check, device)[0]),
            ("agents/create (bridge)", lambda: app.call("agents/create", {"display_name": "more"}, bridge)[0]),
            (
                "settings/set (bridge)",
                lambda: app.call(
                    "settings/set", {"key": "audit_retention_days", "value": next(settings_values)}, bridge
                )[0],
            ),
            ("keys/report-leak (a live key)", report_leak),
            ("keys/report-leak (no key)", report_unknown),
        ]
        say(f"{'route':<34} {'status':>6} {'RPCs':>5} {'reads':>5} {'writes':>6}  calls")
        for name, call in routes:
            call()  # warm: imports, the first client, the route's first document
            if name.startswith("device/revoke"):
                issue()  # a fresh key to revoke, outside the count
            meter.reset()
            status = call()
            calls = ", ".join(method.rsplit("/", 1)[-1] for method in meter.methods)
            say(f"{name:<34} {status:>6} {meter.total:>5} {meter.reads:>5} {meter.writes:>6}  {calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

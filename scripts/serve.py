"""Serve every route on one port, the way a newcomer runs the service locally.

Each function is loaded through functions-framework's own ``create_app`` and
mounted at its API.md path. The Firestore emulator named by
``FIRESTORE_EMULATOR_HOST`` is used; without it, one is started (with
firestore.rules) on the port firebase.json names and stopped on exit.
Unset variables take their dev defaults from emulator-config/dev.env.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from scripts import emulator
from scripts.functions_index import ROOT, all_functions

Environ = dict[str, Any]


def load_dev_defaults() -> None:
    for line in (ROOT / "emulator-config/dev.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            os.environ.setdefault(name.strip(), value.strip())


def build_app() -> Any:
    from functions_framework import create_app

    mounted = {}
    for function in all_functions():
        mounted["/" + function.route] = create_app(  # type: ignore[no-untyped-call]
            target=function.name, source=str(function.source)
        )

    def not_found(start_response: Any) -> Iterable[bytes]:
        body = json.dumps({"error": "not_found", "error_description": "No such route."}).encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        target = mounted.get(environ.get("PATH_INFO", "").rstrip("/") or "/")
        if target is None:
            return not_found(start_response)
        environ["PATH_INFO"] = "/"
        return target(environ, start_response)  # type: ignore[no-any-return]

    return app


@contextlib.contextmanager
def datastore() -> Iterator[str]:
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        host = os.environ["FIRESTORE_EMULATOR_HOST"]
        if not emulator.is_up(host):
            sys.exit(f"error: FIRESTORE_EMULATOR_HOST={host} does not answer; start it or unset the variable")
        yield host
        return
    with emulator.running() as host:
        os.environ["FIRESTORE_EMULATOR_HOST"] = host
        yield host


def warm_up() -> None:
    """One read before announcing the port: a fresh emulator's first answer can take seconds,
    and a newcomer's first request (often a write) should not pay for it."""
    from shared import errors, store

    try:
        store.get_many(["settings/current"])
    except errors.Unavailable:
        print("warning: the Firestore emulator is slow to answer; the first requests may answer 503", file=sys.stderr)


def main() -> None:
    load_dev_defaults()
    try:
        port = int(os.environ.get("PORT", "8000"))
    except ValueError:
        sys.exit("error: PORT must be a number")
    bind = os.environ.get("HOST", "127.0.0.1")
    # SIGTERM should stop the emulator we started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from werkzeug.serving import run_simple

    with datastore() as host:
        app = build_app()
        warm_up()
        print(
            f"agentpack identity: serving every route on http://{bind}:{port} (Firestore emulator {host})", flush=True
        )
        with contextlib.suppress(KeyboardInterrupt):
            run_simple(bind, port, app, threaded=True)


if __name__ == "__main__":
    main()

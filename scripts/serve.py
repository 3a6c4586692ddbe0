"""Serve every route on one port, the way a newcomer runs the service locally.

Each function is loaded through functions-framework's own ``create_app`` and
mounted at its API.md path. The Firestore emulator named by
``FIRESTORE_EMULATOR_HOST`` and the Firebase Auth emulator named by
``FIREBASE_AUTH_EMULATOR_HOST`` are used; for each one not named, one is started
on the port firebase.json names (Firestore with firestore.rules) and stopped on
exit, Ctrl-C or SIGTERM. Unset variables take their dev defaults from
emulator-config/dev.env. "serving" is printed only once the port is bound and
both emulators answer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from scripts import emulator
from scripts.functions_index import all_functions

Environ = dict[str, Any]


def load_dev_defaults() -> None:
    for name, value in emulator.read_dev_env().items():
        os.environ.setdefault(name, value)


def check_config() -> None:
    """Refuse to start with a configuration every request would refuse (503): say what is wrong."""
    from shared import config, errors

    try:
        for check, variable in (
            (config.capability_keys, " (AGENTPACK_CAPABILITY_PUBLIC_KEYS)"),
            (config.get, ""),  # its refusals name their variable (AGENTPACK_BRIDGE_KEY, ...)
            (config.secrets_keyring, " (AGENTPACK_SECRETS_KEYS)"),
            (config.token_signing_keys, " (AGENTPACK_TOKEN_SIGNING_KEYS)"),
            (config.issuer, ""),
        ):
            try:
                check()
            except errors.ConfigRefused as refusal:
                sys.exit(
                    f"error: invalid configuration: {refusal.reason}{variable}.\n"
                    "Fix the variable, or unset it to use the dev value of emulator-config/dev.env."
                )
    finally:
        config.reset()


def build_app() -> Any:
    from functions_framework import create_app

    mounted = {}
    for function in all_functions():
        mounted["/" + function.route] = create_app(  # type: ignore[no-untyped-call]
            target=function.name, source=str(function.source)
        )

    def not_found(environ: Environ, start_response: Any) -> Iterable[bytes]:
        from shared import http

        return http.unrouted(environ)(environ, start_response)

    def app(environ: Environ, start_response: Any) -> Iterable[bytes]:
        target = mounted.get(environ.get("PATH_INFO", "").rstrip("/") or "/")
        if target is None:
            return not_found(environ, start_response)
        environ["PATH_INFO"] = "/"
        return target(environ, start_response)  # type: ignore[no-any-return]

    return app


def install_logs() -> None:
    """The functions' JSON log lines (shared/logs.py), one per request; werkzeug's own request lines
    would be a second line per request, with the query string: kept to its warnings."""
    from shared import logs

    logs.install()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def bind(host: str, port: int, app: Any) -> Any:
    """The bound and listening (not yet serving) server; a busy port or a bad host is a clear error, exit 1."""
    from werkzeug.serving import make_server

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listening = socket.create_server((host, port), family=family, backlog=128)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            sys.exit(f"error: port {port} on {host} is in use; stop what uses it, or choose another port with PORT=")
        sys.exit(f"error: cannot serve on {host}:{port}: {error.strerror or error}")
    with listening:  # werkzeug serves a duplicate of this socket
        return make_server(host, port, app, threaded=True, fd=listening.fileno())


@contextlib.contextmanager
def emulators() -> Iterator[tuple[str, str]]:
    """The Firestore and Auth emulators: those named by the environment (they must answer), else
    started here side by side and stopped on exit. Yields their ``host:port``."""
    named = {
        "FIRESTORE_EMULATOR_HOST": ("a Firestore emulator", emulator.is_up),
        "FIREBASE_AUTH_EMULATOR_HOST": ("an Auth emulator", emulator.auth_is_up),
    }
    for variable, (name, answers) in named.items():
        host = os.environ.get(variable)
        if host and not answers(host):
            sys.exit(f"error: {variable}={host} does not answer as {name}; start it or unset the variable")
    with contextlib.ExitStack() as stack:
        starting: dict[str, emulator.Started] = {}
        if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
            starting["FIRESTORE_EMULATOR_HOST"] = emulator.start_firestore()
            stack.callback(starting["FIRESTORE_EMULATOR_HOST"].stop)
        if not os.environ.get("FIREBASE_AUTH_EMULATOR_HOST"):
            starting["FIREBASE_AUTH_EMULATOR_HOST"] = emulator.start_auth()
            stack.callback(starting["FIREBASE_AUTH_EMULATOR_HOST"].stop)
        for variable, started in starting.items():
            os.environ[variable] = started.wait()
        yield os.environ["FIRESTORE_EMULATOR_HOST"], os.environ["FIREBASE_AUTH_EMULATOR_HOST"]


def warm_up() -> None:
    """One read before announcing the port: a fresh emulator's first answer can take seconds,
    and a newcomer's first request (often a write) should not pay for it."""
    from shared import errors, store

    try:
        store.get_many(["settings/current"])
    except errors.Unavailable:
        print("warning: the Firestore emulator is slow to answer; the first requests may answer 503", file=sys.stderr)


def _stop(signum: int, _frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop at a time; cleanup has bounded timeouts
    sys.exit(0)


def main() -> None:
    load_dev_defaults()
    try:
        port = int(os.environ.get("PORT", "8000"))
    except ValueError:
        sys.exit("error: PORT must be a number")
    if not 0 < port < 65536:
        sys.exit("error: PORT must be from 1 to 65535")
    host = os.environ.get("HOST", "127.0.0.1")
    check_config()
    install_logs()
    # SIGTERM stops the emulators started here, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _stop)
    app = build_app()
    with bind(host, port, app) as server, emulators() as (firestore_host, auth_host):
        warm_up()
        print(
            f"agentpack identity: serving every route on http://{host}:{port} "
            f"(Firestore emulator {firestore_host}, Auth emulator {auth_host})",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C while starting: the emulators started so far are stopped
        sys.exit(130)

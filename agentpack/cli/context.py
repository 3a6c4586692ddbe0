"""What every handler is given (the parsed arguments and a way to the client), exit codes, and small input types."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from agentpack import config, errors
from agentpack.cli import output
from agentpack.client import DEFAULT_TIMEOUT, Client
from agentpack.config import Credential
from agentpack.models import Page, to_dict

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4, 5
DELEGABLE_ROUTES = ("secrets/get", "secrets/put", "secrets/list", "secrets/delete")
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """A problem with what was asked, found before anything was sent: exit 2."""


def exit_code(error: errors.ApiError) -> int:
    """3 for a refusal, 4 when the service cannot answer (or is not there), 5 for its bugs."""
    if isinstance(error, errors.Unavailable | errors.UnexpectedResponse):
        return EXIT_UNAVAILABLE
    if 400 <= error.status < 500:
        return EXIT_REFUSED
    return EXIT_INTERNAL


def datastore_work(work: Callable[[], int], ctx: Context) -> int:
    """Run operator work straight against the datastore (reseal, audit verify, audit migrate), answering
    its failures as exit codes: 4 when the datastore or the configuration fails, 5 for a bug."""
    from shared import errors as service_errors  # the service's code: only these operator commands need it

    try:
        return work()
    except service_errors.ConfigRefused as refusal:
        print(f"error: configuration refused: {refusal.reason}", file=ctx.err)
        return EXIT_UNAVAILABLE
    except service_errors.ApiError as error:
        print(f"error: {error.code}: {error.description}", file=ctx.err)
        return EXIT_UNAVAILABLE if error.status == 503 else EXIT_INTERNAL


def duration(text: str) -> int:
    """Seconds from ``3600``, ``90s``, ``15m``, ``12h`` or ``7d`` (an argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("a duration such as 3600, 90s, 15m, 12h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def positive_int(text: str) -> int:
    """A whole number of at least 1 (an argparse type): ``--limit 0`` would otherwise still fetch one item."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return number


def scopes(values: Sequence[str]) -> list[str]:
    # "--scope secrets/get --scope secrets/list", "secrets/get,secrets/list" and "secrets/get secrets/list" all work.
    return [route for value in values for route in re.split(r"[\s,]+", value) if route]


@dataclass
class Context:
    args: argparse.Namespace
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)
    credential: Credential | None = None
    needs: config.Needs = "any"
    delegation: str | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def client(self, needs: config.Needs, *, delegated: bool = False) -> Client:
        self.needs = needs
        self.credential = credential = config.choose(needs, self.args.role)
        delegation = None
        if delegated and credential.kind != "bridge_key":
            delegation = self.delegation = getattr(self.args, "delegation", None) or config.delegation()
        kind, value = credential.kind, credential.value
        url = self.args.url or config.url()
        try:
            return Client(
                url,
                bridge_key=value if kind == "bridge_key" else None,
                device_key=value if kind == "device_key" else None,
                token=value if kind == "token" else None,
                delegation=delegation,
                timeout=self.timeout(),
                allow_insecure_http=os.environ.get("AGENTPACK_ALLOW_INSECURE_HTTP") == "1",
            )
        except ValueError as problem:
            text = str(problem).replace("base_url:", f"the service URL {url}:", 1)
            where = f" (the {credential.name} from {credential.source})" if text.startswith(kind) else ""
            raise UsageError(f"{text}{where}") from None

    def keyless_client(self) -> Client:
        """A client that sends no header credential: a key pair's assertion authenticates it (OAuth only)."""
        url = self.args.url or config.url()
        try:
            return Client(
                url,
                oauth_only=True,
                timeout=self.timeout(),
                allow_insecure_http=os.environ.get("AGENTPACK_ALLOW_INSECURE_HTTP") == "1",
            )
        except ValueError as problem:
            raise UsageError(str(problem).replace("base_url:", f"the service URL {url}:", 1)) from None

    def timeout(self) -> float:
        """--timeout, else AGENTPACK_TIMEOUT, else the client's default (seconds)."""
        if self.args.timeout is not None:
            return float(self.args.timeout)
        try:
            return float(os.environ.get("AGENTPACK_TIMEOUT", "") or DEFAULT_TIMEOUT)
        except ValueError:
            raise UsageError("AGENTPACK_TIMEOUT must be a number of seconds") from None

    def print_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.out)

    def show(self, answer: Any, human: Callable[[], None] | None = None) -> int:
        if self.json:
            self.print_json(to_dict(answer))
        elif human is not None:
            human()
        else:
            output.record(output.pairs(answer), self.out)
        return EXIT_OK

    def note(self, text: str) -> None:
        print(text, file=self.err)


Handler = Callable[[Context], int]


def paged(ctx: Context, fetch: Callable[[int, str | None], Page[Any]], what: str) -> tuple[list[Any], str | None]:
    """Pages until ``--limit`` items (or every item with ``--all``), from ``--page-token`` on."""
    items: list[Any] = []
    token: str | None = ctx.args.page_token
    while True:
        size = 200 if ctx.args.all else max(1, min(200, ctx.args.limit - len(items)))
        page = fetch(size, token)
        items += page.items
        token = page.next_page_token
        if token is None or (not ctx.args.all and len(items) >= ctx.args.limit):
            break
    if token is not None and not ctx.json:
        ctx.note(f"more {what}: add --page-token {token} (or --all)")
    return items, token

"""Every log line the test suite makes the service write, kept and scanned for secrets at the end.

``tests/conftest.py`` installs ``SESSION`` on the root logger when the session starts: it keeps each
record as the service writes it (``shared.logs.JsonFormatter``, the line Cloud Logging would get)
and as raw text. The tests that run ``scripts/serve`` feed it the JSON lines that process writes.
When the session ends, any line holding a key, a token, a digest, a private key, a traceback, a
dev secret of emulator-config/dev.env or a registered canary fails the run (exit status 1); the
report names the line's logger and the pattern, never the line.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from scripts import emulator
from shared import logs

PATTERNS: dict[str, re.Pattern[str]] = {
    "agentpack key or refresh token": re.compile(r"apk[bdr]_[A-Za-z0-9]{40,}"),
    "JWS or JWT": re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\."),
    "SHA-256 hex digest": re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64}(?![0-9A-Fa-f])"),
    "PEM block": re.compile(r"-----BEGIN"),
    "Python traceback": re.compile(r"Traceback \(most recent call last\)"),
}
DEV_SECRET = "dev secret of emulator-config/dev.env"
CANARY = "registered canary"
# The dev values that are secret (not the public capability key): base64url of 32 bytes, 43 characters.
_DEV_SECRET_VARIABLES = ("AGENTPACK_SECRETS_KEYS", "AGENTPACK_TOKEN_SIGNING_KEYS")
_SEED = re.compile(r"[A-Za-z0-9_-]{43}")


def dev_secrets() -> set[str]:
    """The secrets keys and token signing seeds of emulator-config/dev.env."""
    found: set[str] = set()
    for name, value in emulator.read_dev_env().items():
        if name in _DEV_SECRET_VARIABLES:
            found |= {v for v in json.loads(value).values() if isinstance(v, str) and _SEED.fullmatch(v)}
    return found


@dataclass(frozen=True)
class Line:
    logger: str
    text: str  # as written (a JSON line), and its raw message on a line of its own


@dataclass(frozen=True)
class Finding:
    logger: str
    pattern: str


@dataclass
class Scanner:
    lines: list[Line] = field(default_factory=list)
    canaries: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, logger: str, *texts: str) -> None:
        """One line, scanned in each of its forms (as written, and raw)."""
        with self._lock:
            self.lines.append(Line(logger, "\n".join(texts)))

    def canary(self, value: str) -> None:
        """A value that no log line may hold (a secret value a test puts, say)."""
        with self._lock:
            self.canaries.add(value)

    def feed(self, source: str, text: str) -> None:
        """A served process's output: its JSON log lines (logger named inside), and any traceback."""
        for raw in text.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            if isinstance(entry, dict) and "severity" in entry:
                self.keep(f"{source}: {entry.get('logger', '?')}", raw)
            elif PATTERNS["Python traceback"].search(raw):
                self.keep(source, raw)

    def findings(self, extra_secrets: Iterable[str] = ()) -> list[Finding]:
        secrets = {*extra_secrets}
        found: list[Finding] = []
        with self._lock:
            lines, canaries = list(self.lines), set(self.canaries)
        for line in lines:
            for name, pattern in PATTERNS.items():
                if pattern.search(line.text):
                    found.append(Finding(line.logger, name))
            found += [Finding(line.logger, DEV_SECRET) for s in secrets if s in line.text]
            found += [Finding(line.logger, CANARY) for c in canaries if c in line.text]
        return found


class Capture(logging.Handler):
    """Keeps every record: as the service's handler writes it, and its raw message."""

    def __init__(self, scanner: Scanner) -> None:
        super().__init__(level=logging.NOTSET)
        self.scanner = scanner
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            raw = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is kept as its template
            raw = str(record.msg)
        self.scanner.keep(record.name, self.format(record), raw)


SESSION = Scanner()


def report(findings: list[Finding]) -> list[str]:
    """One line per logger and pattern, with how many lines matched: never the line itself."""
    counted: dict[Finding, int] = {}
    for finding in findings:
        counted[finding] = counted.get(finding, 0) + 1
    return [f"{n} log line(s) of {f.logger!r}: {f.pattern}" for f, n in sorted(counted.items(), key=str)]

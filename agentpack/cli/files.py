"""Files the command writes and reads: key files (mode 0600, never overwritten unless replacing) and inputs."""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from pathlib import Path

from agentpack.cli.context import UsageError


class PrivateFile:
    """A file for a key, opened (mode 0600) *before* the key exists, so a key is never made and then lost.

    ``replace``: write beside the target and rename over it (rotating a key file in place);
    otherwise an existing file is never overwritten.
    """

    def __init__(self, path: str, *, replace: bool) -> None:
        self.path = Path(path)
        self._target = self.path
        if replace:
            self._target = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        try:
            # O_EXCL also refuses a symlink planted at the path, so a key is never redirected elsewhere.
            self._fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} already exists; refusing to overwrite it") from None
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        self._replace = replace

    def write(self, text: str) -> None:
        with os.fdopen(self._fd, "w", encoding="ascii") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if self._replace:
            os.replace(self._target, self.path)

    def discard(self) -> None:
        os.close(self._fd)
        self._target.unlink(missing_ok=True)


def read_input(path: str | None, prompt: str) -> bytes:
    """The bytes of ``path``, or of standard input (``-`` or no path); a terminal is asked without echo."""
    if path is not None and path != "-":
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    if sys.stdin.isatty():
        return getpass.getpass(prompt).encode("utf-8")
    return sys.stdin.buffer.read()

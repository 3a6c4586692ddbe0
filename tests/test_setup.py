"""scripts/setup: what it needs from the machine, and what it says when that is missing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of this one except ``missing`` (symlinked into one folder)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for directory in reversed(os.environ["PATH"].split(os.pathsep)):
        if not directory or not Path(directory).is_dir():
            continue
        for command in Path(directory).iterdir():
            if command.name not in missing and os.access(command, os.X_OK) and not command.is_dir():
                link = folder / command.name
                link.unlink(missing_ok=True)
                link.symlink_to(command)
    (folder / "python3").unlink(missing_ok=True)
    (folder / "python3").symlink_to(sys.executable)
    return str(folder)


@pytest.mark.parametrize("missing", [("node",), ("npm",)])
def test_setup_says_node_and_npm_are_needed_when_missing(tmp_path: Path, missing: tuple[str, ...]) -> None:
    env = {"PATH": path_without(tmp_path, *missing), "HOME": str(tmp_path)}
    result = subprocess.run(
        [str(ROOT / "scripts/setup")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "Node.js 20 or newer and npm are required" in result.stderr, result.stderr


def test_setup_is_quick_and_quiet_when_everything_is_installed() -> None:
    result = subprocess.run([str(ROOT / "scripts/setup")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr  # the stamps of .venv and node_modules match their pins
    assert (ROOT / "node_modules/.bin/firebase").exists()
    stamp = (ROOT / "node_modules/.installed").read_text().strip()
    pins = (ROOT / "package.json").read_bytes() + (ROOT / "package-lock.json").read_bytes()
    assert stamp == hashlib.sha256(pins).hexdigest()

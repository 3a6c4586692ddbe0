"""``pip install`` of the project into a fresh venv outside the checkout: the operator's commands stand alone.

The project's files are copied to a temporary folder first (the build writes build/ and
*.egg-info beside its sources), installed with the pinned dependencies (constraints.txt; pip's
cache makes this take seconds), and the installed ``agentpack`` is run from yet another folder,
with no checkout on its path: bridge-key new, capability keygen and mint, stage, and deploy's dry run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENT = "agt_" + "0" * 22
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "node_modules", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", "*.log"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ of a new venv holding only ``pip install <copy of the project>`` and its dependencies."""
    base = tmp_path_factory.mktemp("install")
    sources = base / "agentpack-identity"
    shutil.copytree(ROOT, sources, ignore=_NOT_SOURCES)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    done = subprocess.run(
        [*pip, "-c", str(ROOT / "constraints.txt"), str(sources)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.rmtree(sources)  # the install must not lean on the folder it was built from
    return venv / "bin"


def agentpack(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPACK_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [str(bin_dir / "agentpack"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (args, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_the_installed_command_needs_no_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import agentpack, shared; print(agentpack.__file__, shared.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert all(Path(path).is_relative_to(installed.parent) for path in where.stdout.split())

    made = agentpack(installed, "--json", "bridge-key", "new", "--out", "bridge.key", cwd=tmp_path)
    key = (tmp_path / "bridge.key").read_text().strip()
    assert key.startswith("apkb_") and key not in made.stdout + made.stderr
    assert len(json.loads(made.stdout)["hash"]) == 64

    agentpack(installed, "capability", "keygen", "--kid", "prod-1", "--out", "cap.key", cwd=tmp_path)
    assert (tmp_path / "cap.key").stat().st_mode & 0o077 == 0
    minted = agentpack(
        installed, "capability", "mint", "--key", "cap.key", "--kid", "prod-1", "--agent", AGENT,
        "--scope", "secrets/get", "--ttl", "60", cwd=tmp_path,
    )  # fmt: skip
    assert minted.stdout.strip().count(".") == 2

    dry_run = agentpack(installed, "deploy", "--project", "demo-proj", cwd=tmp_path)
    commands = [shlex.split(line) for line in dry_run.stdout.splitlines()]
    deploys = [c for c in commands if c[:3] == ["gcloud", "functions", "deploy"]]
    assert len(deploys) == len(list((ROOT / "functions").glob("*/main.py"))) == len(commands) - 1
    for command in deploys:
        name = command[3].replace("-", "_")
        assert f"--source=build/functions/{name}" in command and f"--entry-point={name}" in command
        staged = tmp_path / "build" / "functions" / name
        assert (staged / "main.py").read_text() == (ROOT / "functions" / name / "main.py").read_text()
        assert (staged / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
    assert (tmp_path / "build" / "firestore" / "firestore.rules").read_text() == (ROOT / "firestore.rules").read_text()

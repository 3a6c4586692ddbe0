"""``agentpack deploy`` on a fresh checkout: the dry run's commands, and --apply's answers when a tool is missing.

The checkout is ``git archive HEAD`` unpacked in a temporary folder (no .venv, no build/, no
node_modules/), run with this interpreter's packages; the functions are those under its functions/.
The external tools (gcloud, firebase) are stood in by small scripts that record their arguments.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("checkout")
    archive = target.parent / f"{target.name}.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--output", str(archive), "HEAD"], check=True, timeout=60)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def deploy(checkout: Path, *args: str, path: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m agentpack.cli deploy ARGS`` from the checkout, with only the given PATH and variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPACK_", "GOOGLE_", "CLOUDSDK_"))}
    base |= {"PATH": path if path is not None else base["PATH"], "PYTHONPATH": str(checkout), **env}
    return subprocess.run(
        [sys.executable, "-m", "agentpack.cli", "deploy", *args],
        cwd=checkout, env=base, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_dry_run_prints_one_deploy_per_function_of_the_checkout(checkout: Path) -> None:
    result = deploy(checkout, "--project", "demo-proj", "--region", "europe-west1")
    assert result.returncode == 0, result.stderr
    functions = sorted(p.parent.name for p in (checkout / "functions").glob("*/main.py"))
    assert len(functions) > 10
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    deploys = [c for c in commands if c[:3] == ["gcloud", "functions", "deploy"]]
    assert sorted(c[3] for c in deploys) == sorted(name.replace("_", "-") for name in functions)  # one each
    for command in deploys:
        name = command[3].replace("-", "_")
        flags = dict(arg.split("=", 1) for arg in command[4:] if "=" in arg)
        assert flags["--entry-point"] == name and flags["--source"] == f"build/functions/{name}"
        staged = checkout / flags["--source"]
        assert (staged / "main.py").read_text() == (checkout / "functions" / name / "main.py").read_text()
        assert (staged / "requirements.txt").is_file() and (staged / "shared" / "__init__.py").is_file()
        assert {"--gen2", "--runtime=python312", "--trigger-http", "--region=europe-west1"} <= set(command)
        assert flags["--service-account"] == "agentpack-identity@demo-proj.iam.gserviceaccount.com"
        assert flags["--set-env-vars"] == "GOOGLE_CLOUD_PROJECT=demo-proj,AGENTPACK_SECRET_SOURCE=secret-manager"
        assert not any(arg.startswith("--set-secrets") for arg in command)  # the functions read Secret Manager
    (firebase,) = [c for c in commands if c not in deploys]  # (cd DIR && firebase deploy ...): reads DIR/firebase.json
    assert firebase[0] == "(cd" and firebase[2] == "&&" and firebase[-1].endswith(")")
    assert firebase[4:7] == ["deploy", "--only", "firestore:rules,firestore:indexes"]
    for name in ("firebase.json", "firestore.rules", "firestore.indexes.json"):
        assert (checkout / firebase[1] / name).read_text() == (checkout / name).read_text()
    assert "firebase-tools@15" in result.stderr  # no node_modules/ in a fresh checkout: says how to get it


def test_the_dry_run_refuses_bad_arguments_before_staging(checkout: Path) -> None:
    for args in (["--project", "Not A Project"], ["--project", "demo-proj", "--region", "eu west"]):
        result = deploy(checkout, *args)
        assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr, args
    dev_key = '{"dev-1": "u1Jo0zHQLHA00RjTEWgXzsXsmqHMgiq-uzX2FOaVI4k"}'
    refused = deploy(checkout, "--project", "demo-proj", "--capability-public-keys", dev_key)
    assert refused.returncode == 2 and "dev capability key" in refused.stderr and refused.stdout == ""


def tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)


def test_apply_answers_a_missing_tool_or_credential_clearly(checkout: Path, tmp_path: Path) -> None:
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    home.mkdir()
    args = ("--project", "demo-proj", "--apply")
    no_gcloud = deploy(checkout, *args, path=str(tmp_path / "empty"), HOME=str(home))
    assert no_gcloud.returncode == 1 and "gcloud CLI is missing" in no_gcloud.stderr
    log = tmp_path / "ran.log"
    tool(bin_dir, "gcloud", 'echo "gcloud $*" >> "$LOG"\n')  # signed in to no account: prints nothing
    no_firebase = deploy(checkout, *args, path=str(bin_dir), HOME=str(home), LOG=str(log))
    assert no_firebase.returncode == 1 and "firebase-tools@15" in no_firebase.stderr
    tool(bin_dir, "firebase", 'echo "firebase $*" >> "$LOG"\n')
    signed_out = deploy(checkout, *args, path=str(bin_dir), HOME=str(home), LOG=str(log))
    assert signed_out.returncode == 1 and "gcloud auth login" in signed_out.stderr
    for answer in (no_gcloud, no_firebase, signed_out):
        assert "Traceback" not in answer.stderr and answer.stdout == "" and "nothing was deployed" in answer.stderr
    assert "functions deploy" not in log.read_text()

    tool(bin_dir, "gcloud", 'echo "gcloud $*" >> "$LOG"\ncase "$*" in auth*) echo op@example.com;; esac\n')
    no_adc = deploy(checkout, *args, path=str(bin_dir), HOME=str(home), LOG=str(log))
    assert no_adc.returncode == 1 and "application-default login" in no_adc.stderr
    ready = {"HOME": str(home), "LOG": str(log), "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "sa.json")}
    log.unlink()
    applied = deploy(checkout, *args, path=str(bin_dir), **ready)
    assert applied.returncode == 0, applied.stderr
    ran = log.read_text().splitlines()
    assert [line.split()[:4] for line in ran if "functions deploy" in line] == [
        line.split()[:4] for line in applied.stdout.splitlines() if line.startswith("gcloud functions deploy")
    ]
    assert ran[-1].startswith("firebase deploy --only firestore:rules,firestore:indexes --project demo-proj")
    tool(bin_dir, "gcloud", 'case "$*" in auth*) echo op@example.com;; *) exit 7;; esac\n')
    failed = deploy(checkout, *args, path=str(bin_dir), **ready)
    assert failed.returncode == 1 and "failed (exit 7): gcloud functions deploy" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_docs_deploy_names_every_secret_and_the_service_account() -> None:
    from agentpack.cli import deploy as deploying
    from shared import secret_manager

    text = (ROOT / "docs" / "deploy.md").read_text()
    secrets = [v for k, v in vars(secret_manager).items() if k.isupper() and str(v).startswith("agentpack-")]
    assert len(secrets) >= 2
    for secret in secrets:
        assert f"`{secret}`" in text and f"gcloud secrets create {secret}" in text, secret
    assert f"{deploying.SERVICE_ACCOUNT}@PROJECT.iam.gserviceaccount.com" in text
    for needed in ("roles/datastore.user", "roles/secretmanager.secretAccessor", "firebase-tools@15", "node_modules"):
        assert needed in text, needed

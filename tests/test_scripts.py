"""The operator and developer scripts: staging, deployment and bridge keys (the local server: test_serve.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import stage
from scripts.functions_index import ROOT, all_functions
from shared import keys

PYTHON = sys.executable
API_ROUTES = {
    "agents/create", "agents/get", "agents/list", "agents/update",
    "device/issue", "device/revoke", "device/list",
    "settings/list", "settings/set", "audit/list",
}  # fmt: skip


def test_every_core_route_has_its_own_function() -> None:
    routes = {f.route for f in all_functions()}
    assert routes >= API_ROUTES
    assert len(routes) == len(all_functions())


def test_each_staged_function_stands_alone(tmp_path: Path) -> None:
    """Import every staged folder in a clean interpreter (no repo on sys.path) and call it once."""
    probe = (
        "import sys, json\n"
        "assert not any('work/main' in p and 'build' not in p and 'site-packages' not in p for p in sys.path[1:])\n"
        "from functions_framework import create_app\n"
        "client = create_app(target=sys.argv[1], source='main.py').test_client()\n"
        "answer = client.post('/', json={})\n"
        "print(answer.status_code, json.dumps(answer.get_json()))\n"
    )
    for function in all_functions():
        folder = stage.stage(function, tmp_path)
        assert (folder / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
        assert not (folder / "tests").exists()
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        result = subprocess.run(
            [PYTHON, "-c", probe, function.name], cwd=folder, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith("401 "), (function.name, result.stdout)


def test_staging_bundles_checked_capability_keys(tmp_path: Path) -> None:
    from shared import crypto, tokens
    from tests.conftest import DEV_ENV

    _, public = crypto.new_signing_key()
    wanted = json.dumps({"prod-1": tokens.b64encode(public)})
    function = next(f for f in all_functions() if f.name == "agents_get")
    folder = stage.stage(function, tmp_path, stage.checked_capability_keys(wanted))
    assert json.loads((folder / "capability_keys.json").read_text()) == json.loads(wanted)
    small_order = '{"bad": "' + "A" * 43 + '"}'
    for refused in (small_order, DEV_ENV["AGENTPACK_CAPABILITY_PUBLIC_KEYS"]):
        with pytest.raises(SystemExit):
            stage.checked_capability_keys(refused)


def test_the_dev_values_known_to_config_are_those_of_emulator_config() -> None:
    import base64

    from shared import config
    from tests.conftest import DEV_ENV

    assert keys.hash_key(DEV_ENV["AGENTPACK_BRIDGE_KEY"]) == config.DEV_ONLY_BRIDGE_KEY_HASH
    public = json.loads(DEV_ENV["AGENTPACK_CAPABILITY_PUBLIC_KEYS"])["dev-1"]
    assert base64.urlsafe_b64decode(public + "=") == config.DEV_ONLY_CAPABILITY_PUBLIC_KEY
    secret = json.loads(DEV_ENV["AGENTPACK_SECRETS_KEYS"])["1"]
    assert base64.urlsafe_b64decode(secret + "=") == config.DEV_ONLY_SECRETS_KEY


def test_staging_copies_only_what_a_function_imports(tmp_path: Path) -> None:
    function = next(f for f in all_functions() if f.name == "settings_list")
    folder = stage.stage(function, tmp_path)
    copied = {p.stem for p in (folder / "shared").glob("*.py")}
    assert not {"devices", "secrets", "capabilities"} & copied
    assert {"credentials", "http", "settings", "store", "secret_manager", "tokens", "crypto"} <= copied


def test_deploy_prints_one_gen2_command_per_function() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "scripts.deploy", "--project", "demo-x", "--region", "europe-west1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = [shlex.split(line) for line in result.stdout.splitlines() if line.startswith("gcloud functions deploy")]
    assert {line[3] for line in lines} == {f.deploy_name for f in all_functions()}
    for line in lines:
        for flag in ("--gen2", "--runtime=python312", "--trigger-http", "--region=europe-west1"):
            assert flag in line
        env = next(a for a in line if a.startswith("--set-env-vars="))
        assert "AGENTPACK_SECRET_SOURCE=secret-manager" in env and "GOOGLE_CLOUD_PROJECT=demo-x" in env
        assert not any("apkb_" in a or "AGENTPACK_BRIDGE_KEY=" in a or "SECRETS_KEYS=" in a for a in line)
    assert "firestore:rules,firestore:indexes" in result.stdout


def test_bridge_key_script_makes_a_valid_key_and_its_hash() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "scripts.bridge_key", "new"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    key, digest = fields["bridge key"].strip(), fields["hash"].strip()
    assert keys.is_bridge_key(key)
    assert digest == keys.hash_key(key)
    hashed = subprocess.run(
        [PYTHON, "-m", "scripts.bridge_key", "hash"], cwd=ROOT, input=key + "\n", capture_output=True, text=True
    )
    assert hashed.stdout.strip() == digest
    refused = subprocess.run(
        [PYTHON, "-m", "scripts.bridge_key", "hash"], cwd=ROOT, input=key[:-1] + "\n", capture_output=True, text=True
    )
    assert refused.returncode == 2 and refused.stdout == ""

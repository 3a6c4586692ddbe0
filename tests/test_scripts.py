"""The operator and developer scripts: staging, the thin shims over agentpack (the local server: test_serve.py).

Deployment's dry run on a fresh checkout is in tests/test_deploy.py; an install outside the
checkout in tests/test_install.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentpack import staging
from scripts.functions_index import ROOT, all_functions
from shared import keys, openapi
from tests.conftest import DEV_ENV

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
        "form = {'data': '', 'content_type': 'application/x-www-form-urlencoded'}\n"
        "body = form if sys.argv[3] == 'form' else {'json': {}}\n"
        "answer = client.post('/', **body) if sys.argv[2] == 'POST' else client.get('/' + sys.argv[4])\n"
        "print(answer.status_code, json.dumps(answer.get_json()))\n"
    )
    queries = {"activate_assets": "?file=firebase-auth.js"}  # a file staged beside main.py, served standalone
    for function in all_functions():
        folder = staging.stage(function, tmp_path)
        assert (folder / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
        assert not (folder / "tests").exists()
        # The dev token key: the JWKS and metadata functions answer 200 only with signing keys configured.
        signing_keys = DEV_ENV["AGENTPACK_TOKEN_SIGNING_KEYS"]
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AGENTPACK_TOKEN_SIGNING_KEYS": signing_keys}
        media = "form" if function.route.startswith("oauth/") else "json"
        result = subprocess.run(
            [PYTHON, "-c", probe, function.name, function.method, media, queries.get(function.name, "")],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        # No credential: 401 for a JSON route (400 for the empty body where the route takes no credential);
        # an empty OAuth form is 400 invalid_request, or 401 invalid_client where the client is asked
        # first; a GET route answers.
        open_to_anyone = not openapi.route(function.route).security
        expected = (
            ("200 ",)
            if function.method == "GET"
            else ("400 ", "401 ")
            if media == "form"
            else ("400 ",)
            if open_to_anyone
            else ("401 ",)
        )
        assert result.stdout.startswith(expected), (function.name, result.stdout)


def test_staging_bundles_checked_capability_keys(tmp_path: Path) -> None:
    from shared import crypto, tokens
    from tests.conftest import DEV_ENV

    _, public = crypto.new_signing_key()
    wanted = json.dumps({"prod-1": tokens.b64encode(public)})
    function = next(f for f in all_functions() if f.name == "agents_get")
    folder = staging.stage(function, tmp_path, staging.checked_capability_keys(wanted))
    assert json.loads((folder / "capability_keys.json").read_text()) == json.loads(wanted)
    small_order = '{"bad": "' + "A" * 43 + '"}'
    for refused in (small_order, DEV_ENV["AGENTPACK_CAPABILITY_PUBLIC_KEYS"]):
        with pytest.raises(staging.StagingError):
            staging.checked_capability_keys(refused)


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
    folder = staging.stage(function, tmp_path)
    copied = {p.stem for p in (folder / "shared").glob("*.py")}
    assert not {"devices", "secrets", "capabilities"} & copied
    assert {"credentials", "http", "settings", "store", "secret_manager", "tokens", "crypto"} <= copied


def shim(name: str, *args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``scripts/NAME ARGS`` as a user runs it, from another directory."""
    return subprocess.run(
        [str(ROOT / "scripts" / name), *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300
    )


def test_the_bridge_key_shim_runs_agentpack_bridge_key_from_the_callers_directory(tmp_path: Path) -> None:
    made = shim("bridge-key", "new", "--out", "bridge.key", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key = (tmp_path / "bridge.key").read_text().strip()  # --out is relative to the caller, not to the checkout
    assert keys.is_bridge_key(key) and key not in made.stdout + made.stderr
    digest = dict(line.split(None, 1) for line in made.stdout.splitlines())["hash"].strip()
    assert digest == keys.hash_key(key)
    hashed = shim("bridge-key", "hash", "--json", cwd=tmp_path, stdin=key + "\n")
    assert json.loads(hashed.stdout) == {"hash": digest}
    refused = shim("bridge-key", "hash", cwd=tmp_path, stdin=key[:-1] + "\n")
    assert refused.returncode == 2 and refused.stdout == ""


def test_the_capability_and_stage_shims(tmp_path: Path) -> None:
    made = shim("capability", "keygen", "--kid", "shim-1", "--out", "cap.key", cwd=tmp_path)
    assert made.returncode == 0 and (tmp_path / "cap.key").is_file(), made.stderr
    staged = shim("stage", "--out", "out", cwd=tmp_path)
    assert staged.returncode == 0, staged.stderr
    assert {Path(line).name for line in staged.stdout.split()} == {f.name for f in all_functions()}
    assert all((tmp_path / "out" / "functions" / f.name / "main.py").is_file() for f in all_functions())
    for name in ("bridge-key", "capability", "reseal", "deploy", "stage"):
        text = (ROOT / "scripts" / name).read_text()
        assert "exec " in text and "/.venv/bin/agentpack" in text, name  # a shim, no logic of its own

"""The agentpack command, run as a user runs it (a subprocess with environment variables),
against the real local server over the emulator, and against stand-ins for a broken service.

The module's server is started the way the README's quick start does: with a bridge key
made by ``agentpack bridge-key new``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentpack import Client, cli
from tests.conftest import DEV_ENV
from tests.test_client import UNAVAILABLE, Stub, black_hole, free_port, local_server

ROOT = Path(__file__).resolve().parent.parent
DEV_SIGNING_KEY = ROOT / "emulator-config" / "dev-capability-signing.key"
FAKE_AGENT = "agt_" + "0" * 22


@dataclass
class Served:
    url: str
    bridge_key_file: Path
    home: Path


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path = ROOT) -> Any:
    """``agentpack ARGS`` in a clean environment: nothing AGENTPACK_* leaks in from the caller's shell."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTPACK_", "FIRESTORE_"))}
    return subprocess.run(
        [sys.executable, "-m", "agentpack.cli", *args],
        cwd=cwd, env={**base, **(env or {})}, input=stdin, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def ok(*args: str, **kwargs: Any) -> Any:
    result = run(*args, **kwargs)
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result


def as_json(*args: str, **kwargs: Any) -> Any:
    return json.loads(ok("--json", *args, **kwargs).stdout)


@pytest.fixture(scope="module")
def served(emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("cli")
    key_file = home / "bridge.key"
    made = run("bridge-key", "new", "--out", str(key_file))
    assert made.returncode == 0, made.stderr
    key = key_file.read_text().strip()
    assert key not in made.stdout and key not in made.stderr  # written to the file only
    with local_server(emulator_host, home / "serve.log", AGENTPACK_BRIDGE_KEY=key) as url:
        yield Served(url, key_file, home)


@pytest.fixture
def operator(served: Served) -> dict[str, str]:
    """The environment of an operator's shell."""
    return {"AGENTPACK_URL": served.url, "AGENTPACK_BRIDGE_KEY_FILE": str(served.bridge_key_file)}


def new_agent(operator: dict[str, str], name: str) -> str:
    return str(as_json("agents", "create", name, env=operator)["agent_id"])


def agent_env(served: Served, tmp_path: Path, operator: dict[str, str], name: str, *issue: str) -> dict[str, str]:
    """A new agent and the environment of its install: a device key in a file made by ``keys issue --out``."""
    agent_id = new_agent(operator, name)
    key_file = tmp_path / f"{name}.key"
    ok("keys", "issue", "--agent", agent_id, "--out", str(key_file), *issue, env=operator)
    return {"AGENTPACK_URL": served.url, "AGENTPACK_DEVICE_KEY_FILE": str(key_file), "AGENT_ID": agent_id}


# ---------------------------------------------------------------- the whole flow


def test_from_an_operator_to_an_agent_reading_a_secret_through_a_delegation(
    served: Served, operator: dict[str, str], tmp_path: Path
) -> None:
    alice = agent_env(served, tmp_path, operator, "alice", "--label", "laptop", "--ttl", "30d")
    bob = agent_env(served, tmp_path, operator, "bob")
    key_file = Path(alice["AGENTPACK_DEVICE_KEY_FILE"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.read_text().startswith("apkd_")

    shown = ok("agents", "get", env=alice).stdout
    assert alice["AGENT_ID"] in shown and "alice" in shown
    put = ok("secrets", "put", "db-password", stdin="correct horse\n", env=alice)
    assert "version" in put.stdout and "correct horse" not in put.stdout + put.stderr
    value_file = tmp_path / "value.txt"
    value_file.write_bytes("second ✓".encode())
    ok("secrets", "put", "api-token", "--file", str(value_file), env=alice)
    assert ok("secrets", "get", "db-password", env=alice).stdout == "correct horse\n"  # exactly as stored
    assert ok("secrets", "get", "api-token", env=alice).stdout == "second ✓"

    granted = as_json("delegations", "grant", bob["AGENT_ID"], "--scope", "secrets/get", "--ttl", "1h", env=alice)
    assert granted["scope"] == ["secrets/get"] and granted["to_agent"] == bob["AGENT_ID"]
    through = {**bob, "AGENTPACK_DELEGATION": granted["delegation_id"]}
    assert ok("secrets", "get", "db-password", env=through).stdout == "correct horse\n"
    flag = ("--delegation", granted["delegation_id"])
    assert ok("secrets", "get", "api-token", *flag, env=bob).stdout == "second ✓"

    listing = ok("delegations", "list", env=bob).stdout
    assert "received" in listing and granted["delegation_id"] in listing

    refused = run("secrets", "put", "db-password", stdin="evil", env=through)  # outside the scope
    assert refused.returncode == 3 and refused.stderr.startswith("error: forbidden: ")
    assert f"through delegation {granted['delegation_id']}" in refused.stderr

    ok("delegations", "revoke", granted["delegation_id"], env=alice)
    after = run("secrets", "get", "db-password", env=through)
    assert after.returncode == 3 and "error: forbidden" in after.stderr and after.stdout == ""

    audit = as_json("audit", "list", "--agent", alice["AGENT_ID"], "--all", env=operator)
    actions = [event["action"] for event in audit["events"]]
    assert actions[0] == "delegation.revoke" and actions.count("secret.put") == 2 and "device.issue" in actions
    assert "correct horse" not in json.dumps(audit)
    table = ok("audit", "list", "--action", "secret.put", env=operator).stdout
    assert table.count("secret.put") == 2 and "secret api-token" in table


# ---------------------------------------------------------------- the errors a user meets


def test_a_bad_key_is_refused_with_exit_3(served: Served, tmp_path: Path) -> None:
    bad = {"AGENTPACK_URL": served.url, "AGENTPACK_DEVICE_KEY": "apkd_" + "A" * 60}
    result = run("secrets", "list", env=bad)
    assert result.returncode == 3 and result.stdout == ""
    first, hint = result.stderr.splitlines()
    assert first.startswith("error: unauthenticated: A valid credential is required. (request req_")
    assert hint.startswith("hint: the device key from AGENTPACK_DEVICE_KEY was refused")
    key_file = tmp_path / "bridge.key"
    key_file.write_text(DEV_ENV["AGENTPACK_BRIDGE_KEY"] + "\n")  # live elsewhere, not on this server
    result = run("agents", "list", env={"AGENTPACK_URL": served.url, "AGENTPACK_BRIDGE_KEY_FILE": str(key_file)})
    assert result.returncode == 3 and "error: unauthenticated" in result.stderr and str(key_file) in result.stderr
    assert DEV_ENV["AGENTPACK_BRIDGE_KEY"] not in result.stderr  # the key itself is never echoed
    # The hint fits the credential sent: a bridge key has no agent to be disabled, a device key has.
    bridge_hint = result.stderr.splitlines()[1]
    assert bridge_hint.startswith(f"hint: the bridge key from AGENTPACK_BRIDGE_KEY_FILE ({key_file}) was refused")
    assert "disabled" not in bridge_hint and "expired" not in bridge_hint and "hashes" in bridge_hint
    assert "disabled" in hint


def test_a_service_that_is_down_is_exit_4_with_a_clear_message(operator: dict[str, str]) -> None:
    down = {**operator, "AGENTPACK_URL": f"http://127.0.0.1:{free_port()}"}
    result = run("agents", "list", env=down)
    assert result.returncode == 4 and result.stdout == ""
    first, hint = result.stderr.splitlines()
    assert first.startswith(f"error: unavailable: cannot reach {down['AGENTPACK_URL']}: connection refused (request ")
    assert hint == f"hint: is the service running at {down['AGENTPACK_URL']}? (set AGENTPACK_URL or --url)"


def test_a_wrong_url_is_exit_4(operator: dict[str, str]) -> None:
    with Stub([(501, b"<html>Unsupported method</html>", {"Content-Type": "text/html"})]) as other:
        result = run("agents", "list", "--url", other.url, env=operator)
    assert result.returncode == 4
    assert "error: unexpected_response: HTTP 501 (text/html) is not an agentpack answer" in result.stderr
    assert "hint: check AGENTPACK_URL" in result.stderr


def test_an_unavailable_service_is_exit_4_after_retrying_a_read(operator: dict[str, str]) -> None:
    with Stub([UNAVAILABLE]) as stub:
        result = run("settings", "list", env={**operator, "AGENTPACK_URL": stub.url})
        assert result.returncode == 4 and result.stderr.startswith("error: unavailable: Retry later. (request req_")
        assert len(stub.requests) == 3
        write = run("agents", "create", "x", env={**operator, "AGENTPACK_URL": stub.url})
        assert write.returncode == 4 and len(stub.requests) == 4  # a write: sent once


def test_a_service_that_never_answers_is_exit_4_within_the_timeout(operator: dict[str, str]) -> None:
    with black_hole() as url:
        result = run("agents", "create", "x", "--timeout", "0.5", env={**operator, "AGENTPACK_URL": url})
    assert result.returncode == 4
    assert "error: unavailable: cannot reach" in result.stderr and "no answer within 0.5 s" in result.stderr


def test_a_500_is_exit_5() -> None:
    with Stub([(500, {"error": "internal", "error_description": "The server failed."}, {})]) as stub:
        result = run("secrets", "list", env={"AGENTPACK_URL": stub.url, "AGENTPACK_DEVICE_KEY": "apkd_x"})
    assert result.returncode == 5 and result.stderr.startswith("error: internal: The server failed. (request ")


def test_a_refused_action_is_exit_3(served: Served, operator: dict[str, str], tmp_path: Path) -> None:
    agent = agent_env(served, tmp_path, operator, "agent")
    refused = run("agents", "list", env=agent)  # a device key on a bridge-only route
    assert refused.returncode == 3
    assert refused.stderr.startswith("error: forbidden: Only the bridge key may do this. (request req_")
    assert "hint: an operator command: it needs the bridge key" in refused.stderr
    bridge_on_secrets = run("secrets", "list", env=operator)
    assert bridge_on_secrets.returncode == 3 and "error: forbidden" in bridge_on_secrets.stderr
    assert "an agent command" in bridge_on_secrets.stderr
    not_found = run("agents", "get", FAKE_AGENT, env=operator)
    assert not_found.returncode == 3 and not_found.stderr.startswith("error: not_found: No such object.")
    missing = run("secrets", "get", "nope", env=agent)
    assert missing.returncode == 3 and "error: not_found" in missing.stderr and missing.stdout == ""
    invalid = run("keys", "issue", "--agent", agent["AGENT_ID"], "--ttl", "5", env=operator)
    assert invalid.returncode == 3 and "error: invalid_request: ttl_seconds" in invalid.stderr
    ok("agents", "disable", agent["AGENT_ID"], env=operator)
    disabled = run("agents", "get", env=agent)
    assert disabled.returncode == 3 and "error: unauthenticated" in disabled.stderr
    ok("agents", "enable", agent["AGENT_ID"], env=operator)
    ok("agents", "get", env=agent)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``agentpack ARGS`` in this process (faster), for what never reaches a service."""

    def run_in_process(*args: str, env: dict[str, str]) -> Ran:
        for name in list(os.environ):
            if name.startswith("AGENTPACK_"):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            code = cli.main(list(args))
        except SystemExit as done:  # argparse
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run_in_process


def test_usage_errors_are_exit_2(operator: dict[str, str], tmp_path: Path, run_here: Any) -> None:
    result = run("agents", env=operator)  # once as a real process
    assert result.returncode == 2 and "usage: agentpack agents" in result.stderr and result.stdout == ""
    for args in (["agents", "frobnicate"], ["keys", "issue", "--ttl", "soon"], ["settings", "set", "k"]):
        result = run_here(*args, env=operator)
        assert result.returncode == 2 and "usage: agentpack" in result.stderr and result.stdout == "", args
    nothing = run_here("agents", "list", env={"AGENTPACK_URL": operator["AGENTPACK_URL"]})
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == (
        "agentpack: error: no credential: set AGENTPACK_BRIDGE_KEY_FILE or AGENTPACK_DEVICE_KEY_FILE "
        "or AGENTPACK_TOKEN_FILE (or the same variable without _FILE)"
    )
    both = run_here("agents", "list", env={**operator, "AGENTPACK_BRIDGE_KEY": "apkb_x"})
    assert both.returncode == 2 and "not both" in both.stderr
    unreadable = run_here("agents", "list", env={**operator, "AGENTPACK_BRIDGE_KEY_FILE": str(tmp_path / "nope")})
    assert unreadable.returncode == 2 and "cannot read" in unreadable.stderr
    as_agent = run_here("agents", "list", "--as-agent", env=operator)
    assert as_agent.returncode == 2 and "AGENTPACK_DEVICE_KEY_FILE" in as_agent.stderr
    slow = run_here("agents", "list", env={**operator, "AGENTPACK_TIMEOUT": "soon"})
    assert slow.returncode == 2 and "AGENTPACK_TIMEOUT" in slow.stderr
    taken = tmp_path / "taken.key"
    taken.write_text("keep me")
    exists = run_here("keys", "issue", "--agent", FAKE_AGENT, "--out", str(taken), env=operator)
    assert exists.returncode == 2 and "refusing to overwrite" in exists.stderr and taken.read_text() == "keep me"
    # A key is never accepted as an argument: there is no option that takes one.
    assert run_here("agents", "list", "--bridge-key", "apkb_x", env=operator).returncode == 2
    remote = run_here("agents", "list", env={**operator, "AGENTPACK_URL": "http://identity.example.com"})
    assert remote.returncode == 2 and "use https://" in remote.stderr
    for limit in ("0", "-3", "many"):  # --limit 0 once fetched one item anyway
        for listing in (["audit", "list"], ["agents", "list"]):
            limited = run_here(*listing, "--limit", limit, env=operator)
            assert limited.returncode == 2 and "--limit" in limited.stderr and limited.stdout == "", (listing, limit)
    nonsense = run_here("agents", "list", env={**operator, "AGENTPACK_URL": "127.0.0.1:8000"})
    assert nonsense.returncode == 2
    assert "the service URL 127.0.0.1:8000: an http:// or https:// URL" in nonsense.stderr


def test_help_on_every_command_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    commands: list[list[str]] = []

    def walk(p: Any, path: list[str]) -> None:
        commands.append(path)
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, child in action.choices.items():
                    walk(child, [*path, name])

    walk(parser, [])
    assert len(commands) > 30
    for path in commands:
        with pytest.raises(SystemExit) as done:
            cli.main([*path, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "example" in text and "agentpack" in text.split("example", 1)[1], path
        assert "usage: agentpack" in text


def test_json_output_parses_and_tables_are_readable(served: Served, operator: dict[str, str]) -> None:
    agent_id = new_agent(operator, "json-bot")
    got = as_json("agents", "get", agent_id, env=operator)
    fields = ("agent_id", "display_name", "tenant_id", "created_at", "disabled", "scopes", "public")
    assert got == {k: got[k] for k in fields} and (got["scopes"], got["public"]) == ([], False)
    listed = as_json("agents", "list", env=operator)
    assert [a["agent_id"] for a in listed["agents"]] == [agent_id] and listed["next_page_token"] is None
    assert as_json("agents", "update", agent_id, "--name", "renamed", env=operator)["display_name"] == "renamed"
    settings = as_json("settings", "list", env=operator)["settings"]
    assert settings["rotation_grace_seconds"] == 3600
    changed = as_json("settings", "set", "rotation_grace_seconds", "600", env=operator)
    assert (changed["key"], changed["value"]) == ("rotation_grace_seconds", 600)
    table = ok("settings", "list", env=operator).stdout.splitlines()
    assert table[0].split() == ["KEY", "VALUE"] and ["rotation_grace_seconds", "600"] in [r.split() for r in table]
    for i in range(3):
        new_agent(operator, f"more-{i}")
    page = run("agents", "list", "--limit", "2", env=operator)
    assert len(page.stdout.splitlines()) == 3 and "more agents: add --page-token agt_" in page.stderr
    assert len(as_json("agents", "list", "--all", env=operator)["agents"]) == 4
    paged = as_json("agents", "list", "--limit", "3", env=operator)
    rest = as_json("agents", "list", "--page-token", paged["next_page_token"], env=operator)
    assert len(paged["agents"]) == 3 and len(rest["agents"]) == 1


# ---------------------------------------------------------------- keys: shown once, rotated, expiring


def test_a_device_key_is_printed_once_and_secret_values_never_listed(
    served: Served, operator: dict[str, str], tmp_path: Path
) -> None:
    agent_id = new_agent(operator, "once")
    issued = ok("keys", "issue", "--agent", agent_id, "--label", "ci", env=operator)
    key = next(line.split()[1] for line in issued.stdout.splitlines() if line.startswith("device_key"))
    assert key.startswith("apkd_") and "shown only this once" in issued.stderr
    agent = {"AGENTPACK_URL": served.url, "AGENTPACK_DEVICE_KEY": key}
    ok("secrets", "put", "token", stdin="v4lue-that-must-not-leak", env=agent)
    for args, env in [
        (("keys", "list", "--agent", agent_id), operator),
        (("--json", "keys", "list", "--agent", agent_id), operator),
        (("--json", "audit", "list", "--all"), operator),
        (("secrets", "list"), agent),
        (("--json", "secrets", "list"), agent),
    ]:
        out = ok(*args, env=env)
        assert key not in out.stdout + out.stderr and "v4lue-that-must-not-leak" not in out.stdout + out.stderr
    listed = as_json("secrets", "list", env=agent)["secrets"]
    assert [set(s) for s in listed] == [{"name", "version", "updated_at"}]


def test_rotate_prints_the_new_key_once_and_the_old_one_works_through_the_grace_window(
    served: Served, operator: dict[str, str], tmp_path: Path
) -> None:
    agent = agent_env(served, tmp_path, operator, "rotating", "--label", "laptop", "--ttl", "1d")
    key_file = Path(agent["AGENTPACK_DEVICE_KEY_FILE"])
    old_key = key_file.read_text().strip()
    (old,) = as_json("keys", "list", env=agent)["keys"]

    rotated = ok("keys", "rotate", old["key_id"], "--agent", agent["AGENT_ID"], env=operator)
    fields = dict(line.split(None, 1) for line in rotated.stdout.splitlines() if not line.startswith("old key"))
    new_key = fields["device_key"].strip()
    assert new_key.startswith("apkd_") and new_key != old_key
    assert fields["label"].strip() == "laptop" and fields["replaces"].strip() == old["key_id"]
    assert "old key valid until" in rotated.stdout and "shown only this once" in rotated.stderr
    assert Client(served.url, device_key=old_key).get_agent().agent_id == agent["AGENT_ID"]  # still alive
    assert Client(served.url, device_key=new_key).get_agent().agent_id == agent["AGENT_ID"]
    keys = {k["key_id"]: k for k in as_json("keys", "list", env=agent)["keys"]}
    assert len(keys) == 2 and keys[old["key_id"]]["expires_at"] < old["expires_at"]  # shortened to the grace end
    new_id = next(k for k in keys if k != old["key_id"])
    assert keys[old["key_id"]]["replaced_by"] == new_id and keys[new_id]["replaced_by"] is None
    # In its grace window the old key still works, but it is no longer the agent's active key.
    table = ok("keys", "list", env=agent).stdout.splitlines()
    assert table[0].split()[:3] == ["KEY_ID", "LABEL", "STATUS"] and table[0].split()[-1] == "REPLACED_BY"
    status = {line.split()[0]: line.split()[2] for line in table[1:]}
    assert status == {old["key_id"]: "rotated", new_id: "active"}
    soon = as_json("keys", "expiring", "--within", "2d", "--agent", agent["AGENT_ID"], env=operator)["keys"]
    assert [k["key_id"] for k in soon] == [new_id]  # the rotated key's end is planned already

    # An agent rotates its own key in place: the key file is replaced, nothing is printed.
    in_place = {**agent, "AGENTPACK_DEVICE_KEY_FILE": str(key_file)}
    key_file.write_text(new_key + "\n")
    done = as_json("keys", "rotate", new_id, "--out", str(key_file), env=in_place)
    assert done["new_key"]["device_key_file"] == str(key_file) and "device_key" not in done["new_key"]
    assert done["old_key"]["key_id"] == new_id
    newest = key_file.read_text().strip()
    assert newest not in json.dumps(done) and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert Client(served.url, device_key=newest).get_agent().agent_id == agent["AGENT_ID"]
    again = run("keys", "rotate", old["key_id"], "--agent", agent["AGENT_ID"], env=operator)
    assert again.returncode == 3 and "error: conflict" in again.stderr  # already replaced


def test_expiring_lists_keys_that_expire_within_the_window(operator: dict[str, str]) -> None:
    first, second = new_agent(operator, "first"), new_agent(operator, "second")
    soon = as_json("keys", "issue", "--agent", first, "--label", "soon", "--ttl", "10m", env=operator)
    later = as_json("keys", "issue", "--agent", second, "--label", "later", "--ttl", "2d", env=operator)
    ok("keys", "issue", "--agent", first, "--label", "forever", env=operator)

    hour = as_json("keys", "expiring", "--within", "3600", env=operator)["keys"]
    assert [(k["agent_id"], k["key_id"]) for k in hour] == [(first, soon["key_id"])]
    week = as_json("keys", "expiring", env=operator)["keys"]
    assert [k["key_id"] for k in week] == [soon["key_id"], later["key_id"]]
    table = ok("keys", "expiring", "--within", "3d", env=operator).stdout.splitlines()
    assert table[0].split() == ["AGENT_ID", "KEY_ID", "LABEL", "EXPIRES_AT", "EXPIRES_IN"]
    assert soon["key_id"] in table[1] and ("9m" in table[1] or "10m" in table[1]) and later["key_id"] in table[2]
    assert as_json("keys", "expiring", "--within", "1h", "--agent", second, env=operator)["keys"] == []

    ok("keys", "revoke", soon["key_id"], env=operator)
    assert as_json("keys", "expiring", "--within", "1h", env=operator)["keys"] == []


# ---------------------------------------------------------------- capability tokens, offline work


def test_capability_keygen_mint_and_record(served: Served, operator: dict[str, str], tmp_path: Path) -> None:
    private = tmp_path / "cap.key"
    made = ok("capability", "keygen", "--kid", "cap-test", "--out", str(private))
    seed = private.read_text().strip()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and len(seed) == 43
    assert seed not in made.stdout + made.stderr and 'AGENTPACK_CAPABILITY_PUBLIC_KEYS=\'{"cap-test":' in made.stderr
    again = run("capability", "keygen", "--out", str(private))
    assert again.returncode == 2 and private.read_text().strip() == seed  # never overwritten

    # The local server trusts the dev key (kid dev-1), so mint with it.
    agent = agent_env(served, tmp_path, operator, "tokened")
    ok("secrets", "put", "db", stdin="through a token", env=agent)
    minted = ok(
        "capability", "mint", "--key", str(DEV_SIGNING_KEY), "--kid", "dev-1", "--agent", agent["AGENT_ID"],
        "--scope", "secrets/get secrets/list", "--ttl", "120", "--record", env=operator,
    )  # fmt: skip
    token = minted.stdout.strip()
    assert token.count(".") == 2 and "recorded at" in minted.stderr
    with_token = {"AGENTPACK_URL": served.url, "AGENTPACK_TOKEN": token}
    assert ok("secrets", "get", "db", env=with_token).stdout == "through a token"
    outside = run("secrets", "delete", "db", env=with_token)
    assert outside.returncode == 3 and "error: forbidden" in outside.stderr

    twice = run("capability", "record", stdin=token + "\n", env=operator)
    assert twice.returncode == 3 and "error: conflict" in twice.stderr
    token_file = tmp_path / "token.txt"
    other = ok(
        "capability", "mint", "--key", str(DEV_SIGNING_KEY), "--kid", "dev-1", "--agent", agent["AGENT_ID"],
        "--scope", "secrets/list", "--out", str(token_file),
    )  # fmt: skip
    assert other.stdout == "" and stat.S_IMODE(token_file.stat().st_mode) == 0o600
    recorded = as_json("capability", "record", "--token-file", str(token_file), env=operator)
    assert set(recorded) == {"jti", "recorded_at"}
    events = as_json("audit", "list", "--action", "capability.record", env=operator)["events"]
    assert len(events) == 2 and token not in json.dumps(events)
    assert run("capability", "record", stdin="not-a-token", env=operator).returncode == 2


def test_bridge_key_commands_work_offline_from_anywhere(tmp_path: Path) -> None:
    console = Path(sys.executable).parent / "agentpack"
    assert console.exists(), "the agentpack console script is missing: run scripts/setup"
    made = subprocess.run([str(console), "--json", "bridge-key", "new"], cwd=tmp_path, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["bridge_key"].startswith("apkb_") and len(data["hash"]) == 64
    hashed = subprocess.run(
        [str(console), "bridge-key", "hash"],
        cwd=tmp_path,
        input=data["bridge_key"] + "\n",
        capture_output=True,
        text=True,
    )
    assert hashed.returncode == 0 and hashed.stdout.strip() == data["hash"]
    wrong = run("bridge-key", "hash", stdin=data["bridge_key"][:-1] + "x")
    assert wrong.returncode == 2 and "not a bridge key" in wrong.stderr


def test_reseal_reuses_the_script(served: Served, operator: dict[str, str], tmp_path: Path, emulator_host: str) -> None:
    agent = agent_env(served, tmp_path, operator, "sealed")
    ok("secrets", "put", "db", stdin="old key", env=agent)
    keys = {**json.loads(DEV_ENV["AGENTPACK_SECRETS_KEYS"]), "2": "A" * 42 + "E"}
    env = {
        "FIRESTORE_EMULATOR_HOST": emulator_host,
        "GOOGLE_CLOUD_PROJECT": DEV_ENV["GOOGLE_CLOUD_PROJECT"],
        "AGENTPACK_SECRETS_KEYS": json.dumps(keys),
    }
    done = ok("reseal", env=env)
    assert "done: 1 records, 1 re-sealed under key version 2, 0 failed" in done.stdout
    assert "old key" not in done.stdout + done.stderr
    assert "done: 1 records, 0 re-sealed" in ok("reseal", env=env).stdout  # safe to run twice
    missing = run("reseal", env={"FIRESTORE_EMULATOR_HOST": emulator_host})
    assert missing.returncode == 2 and "AGENTPACK_SECRETS_KEYS" in missing.stderr


def test_a_closed_pipe_ends_quietly(operator: dict[str, str]) -> None:
    for i in range(3):
        new_agent(operator, f"piped-{i}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTPACK_")} | operator
    command = [sys.executable, "-m", "agentpack.cli", "agents", "list"]
    writer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    first = writer.stdout.readline()
    writer.stdout.close()  # the reader goes away after one line, as `| head -n 1` does
    errors = writer.stderr.read()
    assert writer.wait(timeout=30) in (0, 1)
    assert first.startswith(b"AGENT_ID") and b"Traceback" not in errors


def test_main_in_process_maps_errors_to_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AGENTPACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AGENTPACK_DEVICE_KEY", "apkd_x")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(["--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.2", "secrets", "list"])
    assert code == 4 and "error: unavailable" in err.getvalue()


# ---------------------------------------------------------------- OAuth access tokens


def test_token_get_introspect_and_revoke(served: Served, operator: dict[str, str], tmp_path: Path) -> None:
    agent_id = as_json("agents", "create", "svc", "--scope", "secrets/list,read:reports", env=operator)["agent_id"]
    assert as_json("agents", "get", agent_id, env=operator)["scopes"] == ["secrets/list", "read:reports"]
    key_file = tmp_path / "svc.key"
    ok("keys", "issue", "--agent", agent_id, "--out", str(key_file), env=operator)
    env = {"AGENTPACK_URL": served.url, "AGENTPACK_DEVICE_KEY_FILE": str(key_file)}

    token = ok("token", "get", "--scope", "secrets/list", env=env).stdout.strip()
    assert token.count(".") == 2 and "\n" not in token  # the token alone, for $(...)
    shown = as_json("token", "introspect", stdin=token, env=env)
    assert shown["active"] is True and shown["client_id"] == agent_id and shown["scope"] == "secrets/list"
    assert as_json("token", "introspect", stdin=token + "\n", env=operator)["active"] is True  # the bridge key
    token_env = {"AGENTPACK_URL": served.url, "AGENTPACK_TOKEN": token}
    assert "secrets" in as_json("secrets", "list", env=token_env)  # a route, with the access token

    full = as_json("token", "get", env={**env, "AGENTPACK_AGENT_ID": agent_id})
    assert full["token_type"] == "Bearer" and full["scope"] == "secrets/list read:reports"
    assert full["expires_in"] == 900 and full["refresh_token"] is None

    refused = run("token", "get", "--scope", "admin", env=env)
    assert refused.returncode == 3 and "invalid_scope" in refused.stderr
    wrong_agent = run("token", "get", env={**env, "AGENTPACK_AGENT_ID": FAKE_AGENT})
    assert wrong_agent.returncode == 3 and "invalid_client" in wrong_agent.stderr
    assert run("token", "introspect", token, stdin="", env=env).returncode == 2  # never from arguments
    assert run("token", "get", env=operator).returncode == 2  # the bridge key is no client secret

    ok("token", "revoke", stdin=token, env=env)
    assert as_json("token", "introspect", stdin=token, env=env)["active"] is False
    assert run("secrets", "list", env=token_env).returncode == 3

    updated = as_json("agents", "update", agent_id, "--scope", "read:reports", env=operator)
    assert updated["scopes"] == ["read:reports"]
    assert run("agents", "update", agent_id, env=operator).returncode == 2  # nothing to change
    assert as_json("agents", "update", agent_id, "--no-scopes", env=operator)["scopes"] == []


def test_a_key_pair_gets_tokens_with_no_secret_sent(served: Served, operator: dict[str, str], tmp_path: Path) -> None:
    agent_id = as_json("agents", "create", "ci", "--scope", "read:reports", env=operator)["agent_id"]
    pair = tmp_path / "ci.pair"
    made = as_json("keys", "keypair", "--out", str(pair), env=operator)
    assert stat.S_IMODE(pair.stat().st_mode) == 0o600
    assert made["public_key"] == (tmp_path / "ci.pair.pub").read_text().strip()
    assert made["public_key"] not in pair.read_text()
    issued = as_json("keys", "issue", "--agent", agent_id, "--public-key", str(tmp_path / "ci.pair.pub"), env=operator)
    assert "device_key" not in issued and issued["key_id"].startswith("dk_")
    listed = as_json("keys", "list", "--agent", agent_id, env=operator)["keys"]
    assert [k["kind"] for k in listed] == ["key_pair"]
    narrowed = as_json("keys", "issue", "--agent", agent_id, "--scope", "read:reports", env=operator)
    assert narrowed["scopes"] == ["read:reports"]

    keyless = {"AGENTPACK_URL": served.url}  # no credential at all: the assertion authenticates
    got = as_json("token", "get", "--key-pair", str(pair), "--key-id", issued["key_id"], env=keyless)
    assert got["scope"] == "read:reports" and got["token_type"] == "Bearer"
    assert run("token", "get", "--key-pair", str(pair), env=keyless).returncode == 2  # --key-id is needed
    other = tmp_path / "other.pair"
    ok("keys", "keypair", "--out", str(other), env=operator)
    forged = run("token", "get", "--key-pair", str(other), "--key-id", issued["key_id"], env=keyless)
    assert forged.returncode == 3 and "invalid_client" in forged.stderr


# ---------------------------------------------------------------- users, grants, authz


def test_users_grants_and_authz_with_the_bridge_key_and_an_agent(
    served: Served, operator: dict[str, str], tmp_path: Path
) -> None:
    tenant = "t" + os.urandom(4).hex()
    uid = f"ada-{os.urandom(6).hex()}"
    user = as_json("users", "create", uid, "--tenant", tenant, "--name", "Ada", env=operator)
    user_id = user["user_id"]
    assert user_id.startswith("usr_") and (user["firebase_uid"], user["tenant_id"], user["disabled"]) == (
        uid,
        tenant,
        False,
    )
    assert run("users", "create", uid, "--tenant", tenant, env=operator).returncode == 3  # 409: already registered
    shown = ok("users", "get", user_id, env=operator).stdout
    assert user_id in shown and "Ada" in shown and uid in shown
    listed = as_json("users", "list", "--tenant", tenant, env=operator)
    assert [u["user_id"] for u in listed["users"]] == [user_id] and listed["next_page_token"] is None
    assert user_id in ok("users", "list", "--tenant", tenant, env=operator).stdout
    assert as_json("users", "update", user_id, "--name", "Ada L.", env=operator)["display_name"] == "Ada L."
    assert run("users", "update", user_id, env=operator).returncode == 2  # nothing to change

    agent_id = as_json("agents", "create", "reader", "--scope", "authz:write,authz:read,authz:check", env=operator)[
        "agent_id"
    ]
    ok("keys", "issue", "--agent", agent_id, "--out", str(tmp_path / "reader.key"), env=operator)
    agent = {"AGENTPACK_URL": served.url, "AGENTPACK_DEVICE_KEY_FILE": str(tmp_path / "reader.key")}
    plain = agent_env(served, tmp_path, operator, "plain")
    doc, me, them = f"doc:{os.urandom(4).hex()}", f"agent:{agent_id}", f"user:{user_id}"

    # write: the bridge key in the tenant it names, from options; an agent in its own tenant, from a file.
    moved = as_json("authz", "write", "--tenant", tenant, "--owner", doc, them, env=operator)
    assert moved == {"written": 1, "deleted": 0}
    assert run("authz", "write", "--owner", doc, them, env=operator).returncode == 3  # no tenant: 400
    assert run("authz", "write", "--tenant", tenant, env=operator).returncode == 2  # nothing to write
    # ... the agent must be of the tenant: make it so, and read tuples from a file and from standard input.
    agent_tenant = as_json("agents", "get", agent_id, env=operator)["tenant_id"]
    assert agent_tenant == "default"
    doc_here = f"doc:{os.urandom(4).hex()}"
    tuples = tmp_path / "tuples.json"
    tuples.write_text(json.dumps([{"resource": doc_here, "relation": "viewer", "subject": me}]))
    assert as_json("authz", "write", "--file", str(tuples), env=agent) == {"written": 1, "deleted": 0}
    both = json.dumps({"writes": [{"resource": doc_here, "relation": "editor", "subject": me}], "deletes": []})
    assert as_json("authz", "write", "--file", "-", stdin=both, env=agent) == {"written": 1, "deleted": 0}
    assert run("authz", "write", "--file", "-", stdin="[{}]", env=agent).returncode == 2
    assert run("authz", "write", "--file", str(tuples), env=plain).returncode == 3  # no authz:write scope

    read = as_json("authz", "read", doc_here, env=agent)["tuples"]
    assert sorted((t["relation"], t["subject"]) for t in read) == [("editor", me), ("viewer", me)]
    table = ok("authz", "read", doc, "--tenant", tenant, env=operator).stdout
    assert table.splitlines()[0].split() == ["RESOURCE", "RELATION", "SUBJECT"] and them in table

    # check: prints allowed or denied, exit 0 or 1.
    allowed = run(
        "authz", "check", "--tenant", tenant, "--subject", them, "--action", "share", "--resource", doc, env=operator
    )
    assert (allowed.returncode, allowed.stdout) == (0, "allowed\n")
    denied = run("authz", "check", "--subject", me, "--action", "delete", "--resource", doc_here, env=agent)
    assert (denied.returncode, denied.stdout) == (1, "denied\n")
    assert (
        run("authz", "check", "--subject", me, "--action", "write", "--resource", doc_here, env=agent).returncode == 0
    )
    as_data = run("--json", "authz", "check", "--subject", me, "--action", "delete", "--resource", doc_here, env=agent)
    assert as_data.returncode == 1 and json.loads(as_data.stdout) == {"allowed": False}
    refused = run("authz", "check", "--subject", me, "--action", "read", "--resource", doc_here, env=plain)
    assert refused.returncode == 3 and refused.stdout == ""  # a refusal is not a denial
    assert run("authz", "check", "--action", "read", "--resource", doc, env=operator).returncode == 2  # no subject

    # grants: the bridge key grants for a user; acting for the user follows the grant.
    other = as_json("users", "create", f"bo-{os.urandom(6).hex()}", env=operator)["user_id"]
    ok("authz", "write", "--tenant", "default", "--editor", doc_here, f"user:{other}", env=operator)
    on_behalf = ["authz", "check", "--subject", me, "--on-behalf-of", f"user:{other}", "--resource", doc_here]
    assert run(*on_behalf, "--action", "write", env=agent).returncode == 1  # no grant yet
    grant = as_json(
        "grants", "create", agent_id, "--user", other, "--action", "read,write", "--ttl", "1h", env=operator
    )
    assert grant["grant_id"].startswith("ugr_") and grant["actions"] == ["read", "write"]
    assert run(*on_behalf, "--action", "write", env=agent).returncode == 0
    assert run(*on_behalf, "--action", "delete", env=agent).returncode == 1  # not granted
    held = as_json("grants", "list", env=agent)["grants"]
    assert [(g["grant_id"], g["revoked_at"]) for g in held] == [(grant["grant_id"], None)]
    assert grant["grant_id"] in ok("grants", "list", env=agent).stdout
    assert run("grants", "create", agent_id, "--action", "read", env=operator).returncode == 3  # no --user: 400
    assert run("grants", "create", agent_id, "--user", other, env=operator).returncode == 2  # no --action
    revoked = as_json("grants", "revoke", grant["grant_id"], env=operator)
    assert revoked["grant_id"] == grant["grant_id"] and revoked["revoked_at"]
    assert run(*on_behalf, "--action", "write", env=agent).returncode == 1

    # disabling the user holds for its checks at once.
    assert as_json("users", "update", user_id, "--disable", env=operator)["disabled"] is True
    gone = run(
        "authz", "check", "--tenant", tenant, "--subject", them, "--action", "read", "--resource", doc, env=operator
    )
    assert (gone.returncode, gone.stdout) == (1, "denied\n")
    assert as_json("users", "update", user_id, "--enable", env=operator)["disabled"] is False


# ---------------------------------------------------------------- reporting a leaked key


def test_keys_report_leak_finds_keys_in_a_file_or_stdin_and_needs_no_credential(
    served: Served, operator: dict[str, str], tmp_path: Path
) -> None:
    alice = agent_env(served, tmp_path, operator, "alice")
    bob = agent_env(served, tmp_path, operator, "bob")
    assert run("agents", "get", env=alice).returncode == 0
    leaked = Path(alice["AGENTPACK_DEVICE_KEY_FILE"]).read_text().strip()
    log = tmp_path / "ci.log"
    log.write_text(f"step 3\nexport AGENTPACK_DEVICE_KEY={leaked} # oops\n{leaked}\napkd_short\n")
    anyone = {"AGENTPACK_URL": served.url}  # no credential at all

    reported = ok("keys", "report-leak", "--file", str(log), env=anyone)
    assert "keys reported" in reported.stdout and " 1" in reported.stdout  # the same key twice: sent once
    assert leaked not in reported.stdout + reported.stderr
    refused = run("agents", "get", env=alice)
    assert refused.returncode == 3 and "unauthenticated" in refused.stderr
    assert run("agents", "get", env=bob).returncode == 0  # another agent's key stands

    bob_key = Path(bob["AGENTPACK_DEVICE_KEY_FILE"]).read_text()
    assert as_json("keys", "report-leak", env=anyone, stdin=f"found: {bob_key}") == {"received": 1}
    assert run("agents", "get", env=bob).returncode == 3
    events = as_json("audit", "list", "--action", "key.leak_reported", env=operator)
    assert sorted(e["target"]["agent_id"] for e in events["events"]) == sorted([alice["AGENT_ID"], bob["AGENT_ID"]])

    nothing = run("keys", "report-leak", "apkd_short", env=anyone)
    assert nothing.returncode == 2 and "no key found" in nothing.stderr
    both = run("keys", "report-leak", leaked, "--file", str(log), env=anyone)
    assert both.returncode == 2

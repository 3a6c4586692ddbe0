"""docs/users.md's worked example, run top to bottom with bash against a real ``scripts/serve``.

The harness is test_walkthrough.py's: every ```bash block runs in order in one bash process from the
repository root, in a temporary HOME, with PORT on a free port; an ERR trap reports any failing
command. To keep the suite quick, the doc's server uses this session's Firestore and Auth emulators
(named by FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST, as a reader with emulators of
their own would) rather than starting two more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_walkthrough import DOCS, _started_pid, alive, answers_in, newcomer, run_doc, stop_server

ALLOWED = (200, {"allowed": True})
DENIED = (200, {"allowed": False})


def only(block: str) -> list[tuple[int, dict[str, Any]]]:
    return answers_in(block)


def test_the_users_walkthrough_runs_and_allows_and_denies_as_it_says(
    tmp_path: Path, emulator_host: str, auth_emulator: str
) -> None:
    env, _, port = newcomer(tmp_path)
    env = {"FIRESTORE_EMULATOR_HOST": emulator_host, "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator, **env}
    run = None
    try:
        run = run_doc(DOCS / "users.md", env, tmp_path)
        assert "@@failed" not in run.stderr, run.stderr[-3000:]
        assert run.server is not None and alive(run.server), "on its own, the example starts a server"
        setup, people, signed_in, delegate, tuples, allowed, denied, exchanged, disabled = run.blocks
        assert answers_in(setup) == []
        created = only(people)
        assert [status for status, _ in created] == [201, 201, 201], people
        ada, bob, eve = (user for _, user in created)
        assert (ada["display_name"], ada["tenant_id"]) == ("Ada", "default")
        assert (bob["tenant_id"], eve["tenant_id"]) == ("default", "acme")
        [(status, me)] = only(signed_in)
        assert (status, me["user_id"]) == (200, ada["user_id"])
        (s1, agent), (s2, key), (s3, grant) = only(delegate)
        assert (s1, s2, s3) == (201, 201, 201)
        assert key["agent_id"] == agent["agent_id"] and "authz:check" in agent["scopes"]
        assert (grant["user_id"], grant["agent_id"], grant["actions"]) == (ada["user_id"], agent["agent_id"], ["read"])
        assert only(tuples) == [(200, {"written": 2, "deleted": 0}), (200, {"written": 1, "deleted": 0})]
        assert only(allowed) == [ALLOWED]
        assert only(denied) == [DENIED] * 5  # beyond the grant, cross-user, no grant, cross-tenant twice
        assert "scope: read" in exchanged
        assert only(exchanged) == [ALLOWED]
        (status, user), *after = only(disabled)
        assert (status, user["disabled"]) == (200, True)
        assert after[:2] == [DENIED, DENIED]  # the exchanged token and the check on her behalf
        assert after[2][0] == 401 and after[2][1]["error"] == "unauthenticated"  # her ID token
    finally:
        stop_server(run.server if run else _started_pid(tmp_path / "users.out"), {}, port)

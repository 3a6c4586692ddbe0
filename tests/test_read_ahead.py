"""The read-ahead tags: only the service can make a key or a delegation ID whose tag matches,
and a tag matches only the caller, route, time and keys it was made for."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from shared import allowlist, clock, config, ids, keys, read_ahead
from tests.conftest import DEV_ENV, forged_delegation_id, forged_device_key

GRANTOR, GRANTEE, OTHER = ids.new_agent_id(), ids.new_agent_id(), ids.new_agent_id()
DEV_KEYS = json.loads(DEV_ENV["AGENTPACK_SECRETS_KEYS"])
OTHER_KEY = "B" * 42 + "E"  # 32 bytes, base64url


@pytest.fixture
def keyring(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Configure these secrets key versions (conftest's fresh_datastore restores the dev ones after)."""

    def use(versions: dict[str, str]) -> None:
        monkeypatch.setenv("AGENTPACK_SECRETS_KEYS", json.dumps(versions))
        config.reset()

    return use


def delegation(scope: tuple[str, ...] = ("secrets/get",), minutes: int = 10) -> str:
    return read_ahead.new_delegation_id(GRANTOR, GRANTEE, scope, clock.now() + timedelta(minutes=minutes))


def test_a_delegation_id_made_here_allows_its_grantee_its_routes_until_it_expires() -> None:
    made = delegation(("secrets/get", "secrets/list"), minutes=10)
    assert ids.DELEGATION_ID.fullmatch(made) and ids.grantor_of_delegation(made) == GRANTOR
    now = clock.now()
    assert read_ahead.delegation_allows(made, GRANTEE, "secrets/get", now)
    assert read_ahead.delegation_allows(made, GRANTEE, "secrets/list", now)
    assert not read_ahead.delegation_allows(made, GRANTEE, "secrets/put", now)  # not in its scope
    assert not read_ahead.delegation_allows(made, GRANTEE, "authz/check", now)  # never delegable
    assert not read_ahead.delegation_allows(made, OTHER, "secrets/get", now)  # addressed to another agent
    assert not read_ahead.delegation_allows(made, GRANTOR, "secrets/get", now)
    assert read_ahead.delegation_allows(made, GRANTEE, "secrets/get", now + timedelta(minutes=9))
    # Its expiry is rounded down to the minute: never read ahead past it.
    assert not read_ahead.delegation_allows(made, GRANTEE, "secrets/get", now + timedelta(minutes=10))


def test_a_tag_naming_an_expiry_beyond_any_delegations_life_is_refused() -> None:
    longest = timedelta(seconds=allowlist.ALLOW_LIST["delegation_max_ttl_seconds"].maximum)
    now = clock.now()
    far = read_ahead.new_delegation_id(GRANTOR, GRANTEE, ["secrets/get"], now + longest + timedelta(minutes=2))
    assert not read_ahead.delegation_allows(far, GRANTEE, "secrets/get", now)
    longest_made = read_ahead.new_delegation_id(GRANTOR, GRANTEE, ["secrets/get"], now + longest)
    assert read_ahead.delegation_allows(longest_made, GRANTEE, "secrets/get", now)


def test_no_written_or_altered_delegation_id_is_allowed() -> None:
    now = clock.now()
    assert not any(
        read_ahead.delegation_allows(forged_delegation_id(GRANTOR), GRANTEE, "secrets/get", now) for _ in range(2000)
    )
    made = delegation()
    prefix = len("dlg_") + ids.PART_LENGTH
    for place in range(prefix, len(made)):  # every digit of its random part, in turn
        for digit in "0aZ":
            altered = made[:place] + digit + made[place + 1 :]
            if altered != made:
                assert not read_ahead.delegation_allows(altered, GRANTEE, "secrets/get", now), place
    # The same random part under another grantor's name: the tag covers the grantor.
    moved = "dlg_" + ids.agent_part(OTHER) + made[prefix:]
    assert not read_ahead.delegation_allows(moved, GRANTEE, "secrets/get", now)
    assert not read_ahead.delegation_allows("dlg_" + "0" * 44, GRANTEE, "secrets/get", now)


def test_a_device_key_made_here_is_allowed_and_no_written_or_altered_one_is() -> None:
    key_id = ids.new_device_key_id(GRANTEE)
    made = read_ahead.new_device_key(key_id)
    name = keys.parse_device_key(made)
    assert name is not None and name.key_id == key_id and read_ahead.device_key_allows(name, made)
    written = [forged_device_key(key_id) for _ in range(2000)]
    assert not any(read_ahead.device_key_allows(name, key) for key in written)
    secret = keys.secret_part(made)
    for place in range(len(secret)):
        altered_secret = secret[:place] + ("1" if secret[place] != "1" else "2") + secret[place + 1 :]
        altered = keys.new_device_key(key_id, altered_secret)  # a right checksum: only the tag can tell
        assert not read_ahead.device_key_allows(name, altered), place
    # The same secret under another key ID: the tag covers the key ID.
    other_id = ids.new_device_key_id(GRANTEE)
    moved = keys.new_device_key(other_id, secret)
    moved_name = keys.parse_device_key(moved)
    assert moved_name is not None and not read_ahead.device_key_allows(moved_name, moved)


def test_tags_follow_the_secrets_keyring(keyring: Callable[[dict[str, str]], None]) -> None:
    now = clock.now()
    key_id = ids.new_device_key_id(GRANTEE)
    old_key, old_id = read_ahead.new_device_key(key_id), delegation()  # tagged under version 1
    keyring({**DEV_KEYS, "2": OTHER_KEY})
    new_key, new_id = read_ahead.new_device_key(key_id), delegation()  # tagged under version 2, the newest
    name = keys.parse_device_key(new_key)
    assert name is not None
    for key, delegation_id in ((old_key, old_id), (new_key, new_id)):  # every version still configured
        assert read_ahead.device_key_allows(name, key)
        assert read_ahead.delegation_allows(delegation_id, GRANTEE, "secrets/get", now)
    keyring({"2": OTHER_KEY})  # version 1 retired: what it tagged loses read-ahead, nothing else
    assert not read_ahead.device_key_allows(name, old_key)
    assert not read_ahead.delegation_allows(old_id, GRANTEE, "secrets/get", now)
    assert read_ahead.device_key_allows(name, new_key)
    assert read_ahead.delegation_allows(new_id, GRANTEE, "secrets/get", now)

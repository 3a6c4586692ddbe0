"""Relationship tuples and the one check (Zanzibar style): may a subject do an action on a resource?

A tuple ``<type>:<id>#<relation>@<subject>`` says a user or an agent holds a
relation to a resource; ``owner`` allows read, write, delete and share,
``editor`` read and write, ``viewer`` read. A subject may act if it holds a
relation that allows the action. An agent acting for a user may if it is the
user's ``delegate_of`` for that action (grant live, user and agent enabled, one
tenant) **and** the user may: nothing crosses users or tenants.

Every document a check needs has a name computed from the question (tuples by
a hash of what they say, grants by the user and agent they join), so a check is
one read of at most six documents, with no query.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from shared import access_tokens, change, config, credentials, errors, ids, records, schema, store
from shared.access_tokens import AccessToken
from shared.principal import Principal
from shared.records import AgentRecord, RelationTupleRecord, UserGrantRecord, UserRecord

ALLOWS: dict[str, tuple[str, ...]] = {
    "owner": ("read", "write", "delete", "share"),
    "editor": ("read", "write"),
    "viewer": ("read",),
}
WRITE_SCOPE, READ_SCOPE, CHECK_SCOPE = "authz:write", "authz:read", "authz:check"
MAX_CHANGES = 100
READ_LIMIT = 1000
_RESOURCE_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
Relation = Literal["owner", "editor", "viewer"]
Action = Literal["read", "write", "delete", "share"]


def _resource(value: str) -> str:
    kind, colon, object_id = value.partition(":")
    if not colon or _RESOURCE_TYPE.fullmatch(kind) is None:
        raise ValueError("must be <type>:<id>, the type matching [a-z][a-z0-9_]{0,31}")
    schema.check_identifier(object_id)
    return value


def _subject(value: str) -> str:
    kind, _, object_id = value.partition(":")
    if not ((kind == "user" and ids.is_user_id(object_id)) or (kind == "agent" and ids.is_agent_id(object_id))):
        raise ValueError("must be user:usr_… or agent:agt_…")
    return value


def _user(value: str) -> str:
    if not value.startswith("user:") or not ids.is_user_id(value[len("user:") :]):
        raise ValueError("must be user:usr_…")
    return value


Resource = Annotated[str, Field(max_length=170), AfterValidator(_resource)]
Subject = Annotated[str, AfterValidator(_subject)]
OnBehalfOf = Annotated[str, AfterValidator(_user)]


class Tuple(schema.Body):
    resource: Resource
    relation: Relation
    subject: Subject


class Write(schema.Body):
    writes: Annotated[list[Tuple], Field(max_length=MAX_CHANGES)] = Field(default_factory=list)
    deletes: Annotated[list[Tuple], Field(max_length=MAX_CHANGES)] = Field(default_factory=list)
    tenant_id: schema.TenantId | None = None  # with the bridge key; an agent writes in its own tenant


class Read(schema.Body):
    resource: Resource
    tenant_id: schema.TenantId | None = None


class Check(schema.Body):
    action: Action
    resource: Resource
    subject: Subject | None = None
    on_behalf_of: OnBehalfOf | None = None
    token: Annotated[str, Field(max_length=8192)] | None = None
    tenant_id: schema.TenantId | None = None


def tenant_of(principal: Principal, requested: str | None, scope: str) -> str:
    """The tenant a call works in: the bridge names it; an agent works in its own, if its scopes hold ``scope``."""
    if principal.is_bridge:
        if requested is None:
            raise errors.InvalidRequest("tenant_id: required with the bridge key")
        return requested
    principal.require_agent()
    agent = principal.agent
    if agent is None or principal.tenant_id is None:
        raise errors.Unauthenticated()
    if scope not in agent.get("scopes", []):
        raise errors.Forbidden(f"The agent's scopes do not hold {scope}.")
    return principal.tenant_id


def _path(t: Tuple) -> str:
    return records.relation_tuple_path(t.resource, t.relation, t.subject)


def _subject_path(subject: str) -> str:
    kind, _, object_id = subject.partition(":")
    return records.user_path(object_id) if kind == "user" else records.agent_path(object_id)


def write(body: Write, principal: Principal, tenant_id: str) -> dict[str, Any]:
    if len(body.writes) + len(body.deletes) > MAX_CHANGES:
        raise errors.InvalidRequest(f"writes, deletes: at most {MAX_CHANGES} tuples in all")
    if set(body.writes) & set(body.deletes):
        raise errors.InvalidRequest("writes, deletes: a tuple may not be both written and deleted")
    subjects = sorted({t.subject for t in body.writes})
    reads = [*(_path(t) for t in (*body.writes, *body.deletes)), *(_subject_path(s) for s in subjects)]

    def work(c: change.Change) -> dict[str, int]:
        for subject in subjects:
            holder: AgentRecord | UserRecord | None = c[_subject_path(subject)]
            if holder is None or holder["tenant_id"] != tenant_id:
                raise errors.NotFound()  # a subject of another tenant does not exist here
        written = deleted = 0
        for t in dict.fromkeys(body.deletes):  # a tuple named twice counts once
            found: RelationTupleRecord | None = c[_path(t)]
            if found is not None and found["tenant_id"] == tenant_id:
                c.delete(_path(t))
                deleted += 1
        for t in dict.fromkeys(body.writes):
            if c[_path(t)] is None:
                stored: RelationTupleRecord = {
                    "tenant_id": tenant_id,
                    "resource": t.resource,
                    "relation": t.relation,
                    "subject": t.subject,
                    "created_at": c.now,
                }
                c.set(_path(t), stored)
                written += 1
        if written or deleted:
            c.record(
                "relation.write", {"kind": "relations", "tenant_id": tenant_id, "written": written, "deleted": deleted}
            )
        return {"written": written, "deleted": deleted}

    return change.apply(principal, list(dict.fromkeys(reads)), work)


def read(body: Read, tenant_id: str) -> dict[str, Any]:
    rows = store.query(
        records.RELATION_TUPLES, equals={"tenant_id": tenant_id, "resource": body.resource}, limit=READ_LIMIT
    )
    tuples = [{"resource": doc["resource"], "relation": doc["relation"], "subject": doc["subject"]} for _, doc in rows]
    return {"tuples": sorted(tuples, key=lambda t: (t["relation"], t["subject"]))}


# ---------------------------------------------------------------- the check


def question_paths(subject: str, action: str, resource: str, on_behalf_of: str | None) -> list[str]:
    """Every document the check reads, named from the question alone."""
    holder = on_behalf_of or subject
    paths = [
        records.relation_tuple_path(resource, relation, holder)
        for relation, allowed in ALLOWS.items()
        if action in allowed
    ]
    paths.append(_subject_path(subject))
    if on_behalf_of is not None:
        user_id, agent_id = on_behalf_of[len("user:") :], subject[len("agent:") :]
        paths += [_subject_path(on_behalf_of), records.user_grant_path(ids.grant_id_of(user_id, agent_id))]
    return paths


def decide(documents: Any, tenant_id: str, subject: str, action: str, resource: str, on_behalf_of: str | None) -> bool:
    """The answer, from the documents ``question_paths`` named."""
    holder = on_behalf_of or subject
    actor: AgentRecord | UserRecord | None = documents[_subject_path(subject)]
    if actor is None or actor["disabled"] or actor["tenant_id"] != tenant_id:
        return False
    if on_behalf_of is not None:
        if not subject.startswith("agent:"):
            return False  # only an agent acts for a user
        user_id, agent_id = on_behalf_of[len("user:") :], subject[len("agent:") :]
        user: UserRecord | None = documents[_subject_path(on_behalf_of)]
        grant: UserGrantRecord | None = documents[records.user_grant_path(ids.grant_id_of(user_id, agent_id))]
        if (
            user is None
            or user["disabled"]
            or user["tenant_id"] != tenant_id
            or not credentials.grant_is_live(grant, user_id, agent_id)
            or grant is None
            or action not in grant["actions"]
        ):
            return False
    for relation, allowed in ALLOWS.items():
        if action in allowed:
            found: RelationTupleRecord | None = documents[records.relation_tuple_path(resource, relation, holder)]
            if found is not None and found["tenant_id"] == tenant_id:
                return True
    return False


class _Question:
    """A check's subject, acting-for and paths, from the body: named directly, or by an access token."""

    def __init__(self, body: Check) -> None:
        self.body = body
        self.token: AccessToken | None = None
        self.token_paths: credentials.TokenPaths | None = None  # what the token stands on
        self.subject, self.on_behalf_of = body.subject, body.on_behalf_of
        if body.token is not None:
            if body.subject is not None or body.on_behalf_of is not None:
                raise errors.InvalidRequest("token: send either a token or a subject, not both")
            try:
                self.token = access_tokens.verify(
                    body.token, config.token_signing_keys(), issuer=config.issuer(), now=time.time()
                )
            except errors.TokenRefused:
                self.token = None  # an invalid token is a subject that may do nothing
            if self.token is not None:
                self.token_paths = credentials.access_token_paths(self.token)
                actor = self.token.actor
                self.subject = f"agent:{actor}" if actor else f"agent:{self.token.sub}"
                self.on_behalf_of = f"user:{self.token.sub}" if actor else None
        elif body.subject is None:
            raise errors.InvalidRequest("subject: required (or token)")

    def paths(self) -> list[str]:
        if self.subject is None:
            return []
        question = question_paths(self.subject, self.body.action, self.body.resource, self.on_behalf_of)
        standing = self.token_paths.all() if self.token_paths is not None else []
        return list(dict.fromkeys([*question, *standing]))

    def allowed(self, documents: Any, tenant_id: str) -> bool:
        if self.subject is None:
            return False
        if self.token is not None and (
            self.token.tenant_id != tenant_id
            or self.token_paths is None
            or not credentials.access_token_stands(self.token, self.token_paths, documents)
            or (self.token.actor is not None and self.body.action not in self.token.scopes)
        ):
            return False
        return decide(documents, tenant_id, self.subject, self.body.action, self.body.resource, self.on_behalf_of)


def check_reads(hint: Check | None) -> credentials.DocumentsOf:
    """For ``credentials.resolve(also_read=...)``: the check's documents, read beside the caller's credential."""
    paths: list[str] = []
    if hint is not None:
        try:
            paths = _Question(hint).paths()
        except errors.ApiError:
            paths = []  # the body is refused after the credential is checked

    def documents(_agent_id: str) -> list[str]:
        return paths

    return documents


def check(body: Check, principal: Principal, tenant_id: str) -> dict[str, bool]:
    """One round trip in all: the documents were read with the caller's credential, when it read any."""
    question = _Question(body)
    paths = question.paths()
    known = principal.documents
    documents = known if all(p in known for p in paths) else dict(zip(paths, store.get_many(paths), strict=True))
    return {"allowed": question.allowed(documents, tenant_id)}

"""The only module that touches Firestore.

Domain code names documents by path (``"agents/agt_…"``, built by ``records``)
and gets plain dicts back, which it reads as its record types. Every call has
a short deadline: a datastore that does not answer is a ``503 unavailable``
within seconds, never a hung request. Every retry (the library's own, the raw
read's, a contended transaction's) follows one policy, ``RETRY``. The
Firestore client is imported and built on first use, so a cold start pays for
it once.

The hot-path read calls BatchGetDocuments on the client's own gRPC channel
(see ``get_many``). That relies on private attributes of the client library,
named in ``PRIVATE_CLIENT_ATTRIBUTES``; ``tests/test_store_fence.py`` checks
each of them and the decoder against the library's own, so an upgrade of the
pinned library fails a test, not production.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared import config, errors

if TYPE_CHECKING:
    from google.cloud import firestore

log = logging.getLogger("agentpack")
T = TypeVar("T")
Doc = dict[str, Any]

# Every private attribute of the client library this module relies on (checked by a test).
PRIVATE_CLIENT_ATTRIBUTES = (
    "Client._firestore_api",
    "FirestoreClient._transport",
    "FirestoreGrpcTransport._wrapped_methods",
    "FirestoreGrpcTransport.grpc_channel",
    "Client._database_string",
    "Client._rpc_metadata",
    "Client._client_info",
    "Client._emulator_channel",
    "Client._emulator_host",
    "Client._target",
    "Client._credentials",
)
# A channel of its own gets a connection of its own: gRPC shares one between channels of equal arguments.
_OWN_CONNECTION_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
)

# Status codes that mean "the datastore could not answer now": retried while the deadline allows, then 503.
TRANSIENT_CODES = frozenset(
    ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "ABORTED", "CANCELLED")
)
# Of those, the ones worth another attempt of the same call (ABORTED is a lost transaction: retried whole).
RETRIED_CODES = frozenset(("UNAVAILABLE", "DEADLINE_EXCEEDED"))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by the datastore deadline."""

    initial: float = 0.02
    maximum: float = 0.5
    multiplier: float = 2.0

    def pause(self, attempt: int) -> float:
        return random.uniform(0, min(self.maximum, self.initial * self.multiplier**attempt))


RETRY = RetryPolicy()

# A test seam, inert in production: tests wrap the emulator's gRPC channel (``grpc.intercept_channel``)
# to count calls or inject faults at each RPC. None unless a test set it; nothing in shared/ sets it.
_channel_wrapper: Callable[[Any], Any] | None = None


def wrap_channel(wrapper: Callable[[Any], Any] | None) -> None:
    """Tests: wrap the emulator channel of every client built from now on (None: stop); forgets the current one."""
    global _channel_wrapper
    _channel_wrapper = wrapper
    reset()


def client() -> firestore.Client:
    """The instance's Firestore client, built on first use; no credentials found is a 503, not a 500."""
    from google.auth import exceptions as auth_exceptions

    try:
        return _client()
    except auth_exceptions.DefaultCredentialsError:
        log.error("datastore unavailable: no Google credentials (and FIRESTORE_EMULATOR_HOST is unset)")
        raise errors.Unavailable() from None


def reset() -> None:
    """Forget the client (tests that point the service at another datastore)."""
    _client.cache_clear()
    _raw_batch_get.cache_clear()
    _side_batch_get.cache_clear()
    _side_channel.cache_clear()


@functools.cache
def _client() -> firestore.Client:
    from google.api_core import gapic_v1, retry
    from google.cloud import firestore

    settings = config.get()
    db = firestore.Client(project=settings.project_id)
    wrapper = _channel_wrapper
    if wrapper is not None:  # tests only (see wrap_channel); the channel is built on first use, below
        emulator_channel = db._emulator_channel
        db._emulator_channel = lambda transport: wrapper(emulator_channel(transport))  # type: ignore[method-assign,no-untyped-call]
    # The library retries an unreachable datastore for 60 s by default; answer 503 long before that.
    deadline = settings.datastore_deadline_seconds
    policy = retry.Retry(  # RETRY, in the library's terms (it adds the jitter itself)
        initial=RETRY.initial,
        maximum=RETRY.maximum,
        multiplier=RETRY.multiplier,
        timeout=deadline,
        predicate=_is_retried,
    )
    transport = db._firestore_api._transport
    # A Commit is never sent twice: one whose answer was lost may have landed, and its repeat would then
    # be refused (a spent transaction) or apply a create twice. It is a 503, all of it or none of it landed.
    # A Rollback is not retried either: it is a courtesy (the datastore drops an unfinished transaction
    # itself), and retrying it against a datastore that is down would double the wait for the 503.
    once = (transport.commit, transport.rollback)
    transport._wrapped_methods = {
        method: gapic_v1.method.wrap_method(  # type: ignore[no-untyped-call]
            method,
            default_retry=None if method in once else policy,
            default_timeout=deadline,
            client_info=db._client_info,
        )
        for method in transport._wrapped_methods
    }
    return db


def _is_transient(exc: BaseException) -> bool:
    """A library error whose status is one of ``TRANSIENT_CODES``, or its retry loop giving up."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.RetryError):
        return True
    code = getattr(exc, "grpc_status_code", None) if isinstance(exc, gexc.GoogleAPICallError) else None
    return code is not None and code.name in TRANSIENT_CODES


def _is_retried(exc: BaseException) -> bool:
    from google.api_core import exceptions as gexc

    code = getattr(exc, "grpc_status_code", None) if isinstance(exc, gexc.GoogleAPICallError) else None
    return code is not None and code.name in RETRIED_CODES


@contextlib.contextmanager
def faults_as_unavailable(committing: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Turn a datastore that cannot be reached into ``Unavailable`` (``UnconfirmedChange`` once ``committing``)."""
    try:
        yield
    except errors.ApiError:
        raise
    except Exception as exc:
        # The transaction helper reports faults as a ValueError: "too many attempts" caused by
        # Aborted, or a failed rollback raised while handling a datastore that cannot be reached.
        cause = _transient_cause(exc)
        if cause is None:
            raise
        log.warning("datastore unavailable: %s%s", type(cause).__name__, " at commit" if committing() else "")
        raise (errors.UnconfirmedChange() if committing() else errors.Unavailable()) from None


def _transient_cause(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc
    for _ in range(10):  # bounded walk of the cause/context chain
        if seen is None or _is_transient(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _snapshots_by_path(snapshots: Any) -> dict[str, Doc | None]:
    return {snap.reference.path: (snap.to_dict() if snap.exists else None) for snap in snapshots}


def get_many(paths: Sequence[str]) -> list[Any]:
    """Read documents in one round trip (one BatchGetDocuments call), in the order asked.

    This is the hot path (every credential is resolved through it), so it calls the RPC on the
    client's own channel with plain protobuf messages and decodes the few value types the service
    stores, skipping the library's generic wrappers (most of a request's CPU otherwise).
    The answers are read-only: a caller that wants to change a document reads it in a transaction.
    """
    return start_read(paths).result()


def start_read(paths: Sequence[str], *, own_connection: bool = False) -> PendingRead:
    """Start reading ``paths`` (one BatchGetDocuments call) and return at once, the call in flight.

    Two reads started one after the other cost one round trip of latency. Nothing of the answer is
    received or decoded until ``result()``; ``cancel()`` (or leaving its ``with`` block uncollected)
    drops it unread, so a refused request never waits for, nor decodes, what it would have returned.
    ``own_connection`` sends it on a second channel: on the shared connection a large answer would
    arrive ahead of (and so delay) the other read's, whether or not it is ever collected.
    """
    return PendingRead(list(paths), _side_batch_get if own_connection else _raw_batch_get)


class PendingRead:
    """One BatchGetDocuments call in flight: ``result()`` collects it, ``cancel()`` drops it unread."""

    def __init__(self, paths: list[str], rpc: Callable[[], RawBatchGet]) -> None:
        self.paths = paths
        self._rpc = rpc
        self._deadline = time.monotonic() + config.get().datastore_deadline_seconds
        self._call: Any = self._issue() if paths else None
        self._documents: list[Any] | None = None if paths else []
        self._cancelled = False

    def _issue(self) -> Any:
        batch_get, database, metadata, request_type = self._rpc()
        prefix = database + "/documents/"
        request = request_type(database=database, documents=[prefix + p for p in self.paths])
        return batch_get(request, metadata=metadata, timeout=max(0.05, self._deadline - time.monotonic()))

    def result(self) -> list[Any]:
        """The documents, in the order asked (None for an absent one); retried within the deadline."""
        import grpc

        if self._documents is not None:
            return self._documents
        if self._cancelled:
            raise RuntimeError("this read was cancelled")
        prefix = self._rpc()[1] + "/documents/"
        for attempt in itertools.count():
            found: dict[str, Doc | None] = {}
            try:
                for answer in self._call:
                    if answer.HasField("found"):
                        found[answer.found.name[len(prefix) :]] = _decode_fields(answer.found.fields)
                self._documents = [found.get(p) for p in self.paths]
                return self._documents
            except grpc.RpcError as exc:
                code = exc.code().name if isinstance(exc, grpc.Call) else None
                pause = RETRY.pause(attempt)
                if code in RETRIED_CODES and time.monotonic() + pause < self._deadline:
                    time.sleep(pause)
                    self._call = self._issue()
                    continue
                if code in TRANSIENT_CODES:
                    log.warning("datastore unavailable: %s", code)
                    raise errors.Unavailable() from None
                raise
        raise AssertionError("unreachable")

    def cancel(self) -> None:
        """Drop the call unless collected: what it would have returned is never received here nor decoded."""
        if self._documents is None and not self._cancelled:
            self._cancelled = True
            self._call.cancel()

    def __enter__(self) -> PendingRead:
        return self

    def __exit__(self, *_: object) -> None:
        self.cancel()


def _decode_fields(fields: Any) -> Doc:
    """One found document's fields as Python (the one place a read's answer is decoded)."""
    return {k: _decode(v) for k, v in fields.items()}


RawBatchGet = tuple[Any, str, list[tuple[str, str]], Any]  # the call, the database, its metadata, the request type


@functools.cache
def _raw_batch_get() -> RawBatchGet:
    return _batch_get_on(client()._firestore_api._transport.grpc_channel)


@functools.cache
def _side_batch_get() -> RawBatchGet:
    return _batch_get_on(_side_channel())


@functools.cache
def _side_channel() -> Any:
    """A second channel, built as the library builds its own, on a connection of its own (kept here: a
    channel no longer referenced is closed, whatever still calls through it)."""
    import grpc
    import grpc.experimental

    # Its calls are served in the calling thread alone: nothing of an answer is received, by any
    # thread, until it is collected, and a dropped read costs no background work.
    options = [*_OWN_CONNECTION_OPTIONS, (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
    db = client()
    if db._emulator_host is not None:
        channel = grpc.insecure_channel(db._emulator_host, options=options)
        wrapper = _channel_wrapper
        return channel if wrapper is None else wrapper(channel)  # tests only (see wrap_channel)
    transport = type(db._firestore_api._transport)
    return transport.create_channel(db._target, credentials=db._credentials, options=options)


def _batch_get_on(channel: Any) -> RawBatchGet:
    from google.api_core import gapic_v1
    from google.cloud.firestore_v1.types import firestore as types

    db = client()
    request_type, response_type = types.BatchGetDocumentsRequest.pb(), types.BatchGetDocumentsResponse.pb()
    batch_get = channel.unary_stream(
        "/google.firestore.v1.Firestore/BatchGetDocuments",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    # The metadata the library itself sends: the resource prefix, the emulator's admin token, and the
    # routing header production Firestore uses to find the database.
    routing = gapic_v1.routing_header.to_grpc_metadata((("database", db._database_string),))  # type: ignore[no-untyped-call]
    return batch_get, db._database_string, [*db._rpc_metadata, routing], request_type


def _decode(value: Any) -> Any:
    """A Firestore ``Value`` as Python, for the types this service stores."""
    kind = value.WhichOneof("value_type")
    if kind == "string_value":
        return value.string_value
    if kind == "null_value":
        return None
    if kind == "boolean_value":
        return value.boolean_value
    if kind == "integer_value":
        return value.integer_value
    if kind == "timestamp_value":
        stamp = value.timestamp_value
        return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)
    if kind == "map_value":
        return {k: _decode(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [_decode(v) for v in value.array_value.values]
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value
    raise ValueError(f"unexpected Firestore value type {kind}")


@dataclass
class Transaction:
    """A read-then-write unit: reads first, then writes; all writes commit together or none."""

    _txn: Any
    _db: Any

    def get_many(self, paths: Sequence[str]) -> list[Any]:
        found = _snapshots_by_path(self._db.get_all([self._db.document(p) for p in paths], transaction=self._txn))
        return [found.get(p) for p in paths]

    def create(self, path: str, data: Mapping[str, Any]) -> None:
        self._txn.create(self._db.document(path), data)

    def set(self, path: str, data: Mapping[str, Any]) -> None:
        self._txn.set(self._db.document(path), data)

    def delete(self, path: str) -> None:
        self._txn.delete(self._db.document(path))


def transact(work: Callable[[Transaction], T]) -> T:
    """Run ``work`` in a Firestore transaction; raise ``Unavailable`` on faults.

    Lost contention is retried with jittered exponential backoff (the library retries at once,
    which under contention mostly collides again), within the datastore deadline. It is lost at the
    Commit (the library's ValueError from Aborted) or at a read that waited on another transaction's
    lock (Aborted itself): either way nothing landed, and the retry reads what the winner wrote.
    """
    from google.api_core import exceptions as gexc
    from google.cloud import firestore

    db = client()
    deadline = time.monotonic() + config.get().datastore_deadline_seconds
    committing = False

    @firestore.transactional
    def run(txn: Any) -> T:
        nonlocal committing
        committing = False
        result = work(Transaction(txn, db))
        committing = True  # the library sends the Commit once work returns
        return result

    with faults_as_unavailable(lambda: committing):
        for attempt in itertools.count():
            try:
                result: T = run(db.transaction(max_attempts=1))
                return result
            except (ValueError, gexc.Aborted) as exc:
                lost = exc if isinstance(exc, gexc.Aborted) else exc.__cause__
                if not isinstance(lost, gexc.Aborted):
                    raise
                pause = RETRY.pause(attempt)
                if time.monotonic() + pause > deadline:
                    log.warning("datastore contention: gave up after %d attempts", attempt + 1)
                    raise errors.Contention() from None
                time.sleep(pause)
    raise AssertionError("unreachable")


def query(
    collection: str,
    *,
    equals: dict[str, Any] | None = None,
    contains: dict[str, Any] | None = None,
    order_by: str = "__name__",
    descending: bool = False,
    after_id: str | None = None,
    limit: int,
) -> list[tuple[str, Any]]:
    """Documents of a top-level collection in ``order_by`` order (a field that holds the
    document ID, or the ID itself), after the document ``after_id``. Never on a hot path."""
    from google.cloud import firestore

    ref = client().collection(collection)
    q = _filtered(ref, equals, contains)
    direction = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
    q = q.order_by(order_by, direction=direction)
    if after_id is not None:
        q = q.start_after({order_by: ref.document(after_id) if order_by == "__name__" else after_id})
    with faults_as_unavailable():
        return [(snap.id, snap.to_dict()) for snap in q.limit(limit).stream()]


def _filtered(
    q: Any,
    equals: dict[str, Any] | None,
    contains: dict[str, Any] | None,
    one_of: dict[str, list[Any]] | None = None,
) -> Any:
    """``q`` with an equality filter per ``equals`` field, ``array_contains`` per ``contains`` field and
    ``in`` per ``one_of`` field."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    for operator, filters in (("==", equals), ("array_contains", contains), ("in", one_of)):
        for field, value in (filters or {}).items():
            q = q.where(filter=FieldFilter(field, operator, value))
    return q


def tenant_page(
    collection: str, *, tenant_id: str | None, after_id: str | None, page_size: int
) -> tuple[list[Any], str | None]:
    """One page of a top-level collection in ID order, of one tenant or all: the documents and the next token."""
    rows = query(
        collection,
        equals={"tenant_id": tenant_id} if tenant_id is not None else None,
        after_id=after_id,
        limit=page_size + 1,
    )
    return page(rows, page_size)


def create_once(path: str, data: Mapping[str, Any]) -> bool:
    """Create a document unless it exists, atomically: False if it did (a single-use value seen before)."""
    from google.api_core import exceptions as gexc

    with faults_as_unavailable():
        try:
            client().document(path).create(dict(data))
        except gexc.AlreadyExists:
            return False
    return True


def increment(path: str, field: str, data: Mapping[str, Any]) -> None:
    """Add one to ``field`` of a document (made if absent) and set ``data`` beside it, in one blind write:
    no read and no transaction, so concurrent increments never contend (a counter, ``ratelimit``)."""
    from google.cloud import firestore

    with faults_as_unavailable():
        client().document(path).set({**data, field: firestore.Increment(1)}, merge=True)


def page(rows: list[tuple[str, Any]], page_size: int) -> tuple[list[Any], str | None]:
    """One page of a query asked for ``page_size + 1`` rows: the documents, and the next page's token."""
    shown = rows[:page_size]
    return [doc for _, doc in shown], (shown[-1][0] if len(rows) > page_size else None)


def list_children(parent: str, collection: str, limit: int) -> list[Any]:
    """Every document of a subcollection, in document-ID order (bounded by ``limit``)."""
    db = client()
    with faults_as_unavailable():
        return [snap.to_dict() for snap in db.document(parent).collection(collection).limit(limit).stream()]


def scan_group(collection: str, *, after_path: str | None, limit: int) -> list[tuple[str, Doc]]:
    """Every document of a collection group (all subcollections named ``collection``) in path order.

    For operator scripts that sweep the whole store, page by page; never on a request path.
    """
    db = client()
    q: Any = db.collection_group(collection).order_by("__name__")
    if after_path is not None:
        q = q.start_after({"__name__": db.document(after_path)})
    with faults_as_unavailable():
        return [(snap.reference.path, snap.to_dict()) for snap in q.limit(limit).stream()]


def query_ordered(
    collection: str,
    *,
    equals: dict[str, Any] | None = None,
    contains: dict[str, Any] | None = None,
    one_of: dict[str, list[Any]] | None = None,
    order_by: Sequence[str],
    descending: bool = False,
    after: Sequence[Any] | None = None,
    limit: int,
) -> list[Doc]:
    """Documents of a top-level collection ordered by several fields (all one direction), after the
    cursor ``after`` (one value per ordering field). ``one_of`` is an ``in`` filter (at most 30 values)."""
    from google.cloud import firestore

    q = _filtered(client().collection(collection), equals, contains, one_of)
    direction = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
    for field in order_by:
        q = q.order_by(field, direction=direction)
    if after is not None:
        q = q.start_after(dict(zip(order_by, after, strict=True)))
    with faults_as_unavailable():
        return [snap.to_dict() for snap in q.limit(limit).stream()]


def count(collection: str) -> int:
    """How many documents a top-level collection holds (one aggregation query)."""
    with faults_as_unavailable():
        (result,) = client().collection(collection).count().get()  # type: ignore[no-untyped-call]
        return int(result[0].value)

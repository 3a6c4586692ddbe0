"""agentpack reseal: re-seal every stored secret under the newest secrets key version, straight in the datastore.

Run it after adding a key version; when it reports no record left under an
older version, that version can be retired from the keyring. It is resumable
(``--after PATH`` starts past a record it printed) and safe to run twice:
records already under the newest key are left alone. Values are never printed.
"""

from __future__ import annotations

import os
from secrets import token_urlsafe
from typing import IO

from agentpack.cli.context import EXIT_FAILED, EXIT_OK, Context, UsageError, datastore_work

PAGE = 200


def reseal_all(after: str | None, out: IO[str], err: IO[str], page_size: int = PAGE) -> int:
    """Re-seal from ``after`` on, printing progress; the number of records that could not be re-sealed."""
    from shared import config, errors, records, secrets, store

    newest = config.secrets_keyring().newest_version
    request_id = "reseal_" + token_urlsafe(12)  # names this run on every audit event it writes
    print(f"re-sealing under key version {newest} (audit request_id {request_id})", file=out, flush=True)
    seen, changed, failed = 0, 0, 0
    while True:
        page = store.scan_group(records.SECRETS, after_path=after, limit=page_size)
        for record_path, _ in page:
            seen += 1
            try:
                changed += secrets.reseal(record_path, request_id)
            except errors.ApiError as error:
                failed += 1
                print(f"could not re-seal {record_path}: {error.code}", file=err)
            after = record_path
        if page:
            print(f"progress: {seen} records seen, {changed} re-sealed, {failed} failed; last {after}", file=out)
            out.flush()
        if len(page) < page_size:
            break
    print(f"done: {seen} records, {changed} re-sealed under key version {newest}, {failed} failed", file=out)
    return failed


def reseal(ctx: Context) -> int:
    if not os.environ.get("AGENTPACK_SECRETS_KEYS") and os.environ.get("AGENTPACK_SECRET_SOURCE") != "secret-manager":
        raise UsageError(
            "set AGENTPACK_SECRETS_KEYS to every key version still in use, the new one included "
            "(or AGENTPACK_SECRET_SOURCE=secret-manager)"
        )
    return datastore_work(lambda: EXIT_FAILED if reseal_all(ctx.args.after, ctx.out, ctx.err) else EXIT_OK, ctx)

"""Re-seal every stored secret under the newest secrets key version.

Run it after adding a key version; when it reports no record left under an
older version, that version can be retired from the keyring. It is resumable
(``--after PATH`` starts past a record it printed) and safe to run twice:
records already under the newest key are left alone. Values are never printed.
"""

from __future__ import annotations

import argparse
import sys
from secrets import token_urlsafe

from shared import config, errors, records, secrets, store

PAGE = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/reseal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example: AGENTPACK_SECRETS_KEYS=\'{"1": "...", "2": "..."}\' scripts/reseal',
    )
    parser.add_argument("--after", help="resume after this record path (printed by an earlier run)")
    args = parser.parse_args(argv)
    newest = config.secrets_keyring().newest_version
    request_id = "reseal_" + token_urlsafe(12)  # names this run on every audit event it writes
    print(f"re-sealing under key version {newest} (audit request_id {request_id})", flush=True)
    after, seen, changed, failed = args.after, 0, 0, 0
    while True:
        page = store.scan_group(records.SECRETS, after_path=after, limit=PAGE)
        for record_path, _ in page:
            seen += 1
            try:
                changed += secrets.reseal(record_path, request_id)
            except errors.ApiError as error:
                failed += 1
                print(f"could not re-seal {record_path}: {error.code}", file=sys.stderr)
            after = record_path
        if page:
            print(f"progress: {seen} records seen, {changed} re-sealed, {failed} failed; last {after}", flush=True)
        if len(page) < PAGE:
            break
    print(f"done: {seen} records, {changed} re-sealed under key version {newest}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

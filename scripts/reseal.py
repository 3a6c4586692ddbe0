"""``python -m scripts.reseal [--after PATH]``: kept for callers of the module; the work is ``agentpack reseal``'s.

``PAGE`` may be lowered (tests use small pages to cross page boundaries).
"""

from __future__ import annotations

import argparse
import sys

from agentpack.cli import reseal as resealing

PAGE = resealing.PAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reseal", description=resealing.__doc__)
    parser.add_argument("--after", help="resume after this record path (printed by an earlier run)")
    args = parser.parse_args(argv)
    return 1 if resealing.reseal_all(args.after, sys.stdout, sys.stderr, page_size=PAGE) else 0


if __name__ == "__main__":
    sys.exit(main())

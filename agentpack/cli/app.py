"""Run one agentpack command line: parse it, run its handler, turn every failure into a message and an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from agentpack import errors
from agentpack.cli import output
from agentpack.cli.context import EXIT_FAILED, EXIT_USAGE, Context, UsageError, exit_code
from agentpack.cli.parser import build_parser
from agentpack.config import ConfigurationError


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        return int(args.handler(ctx))
    except (UsageError, ConfigurationError) as problem:
        output.usage_error(str(problem), ctx.err)
        return EXIT_USAGE
    except errors.ApiError as error:
        output.api_error(error, ctx.err, output.hint(error, ctx.credential, ctx.needs, ctx.delegation))
        return exit_code(error)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED

"""``python -m agentpack``: the ``agentpack`` command."""

import sys

from agentpack.cli import main

sys.exit(main())

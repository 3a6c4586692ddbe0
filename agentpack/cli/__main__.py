import sys

from agentpack.cli.app import main

sys.exit(main())

"""The agentpack command: every route of the service, and the offline operator work.

``parser`` defines the command line; one module per command group holds its
handlers (``agents``, ``keys``, ``delegations``, ``secrets``, ``settings``,
``audit``, ``capability``, ``bridge_key``, ``reseal``, ``deploy``); ``context``
is what a handler is given, ``output`` prints tables, JSON and errors, ``files``
writes key files and reads inputs; ``app`` runs one command line.
"""

from agentpack.cli.app import main
from agentpack.cli.parser import build_parser

__all__ = ["build_parser", "main"]

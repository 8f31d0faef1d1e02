"""The ``nas`` command: a parser, one module per subcommand, and the printing they share.

Parses, validates and calls the other ``nas`` packages; holds no search logic. May import every package.
"""
from nas.cli.main import main

__all__ = ["main"]

"""The search space's one exception type."""
from __future__ import annotations


class GenomeError(ValueError):
    """An impossible genome: the message is one line naming the node and the attribute at fault."""

"""The evaluators' one exception type."""
from __future__ import annotations


class DatasetError(ValueError):
    """Data that cannot be loaded: the message is one line naming the field or file and what was expected."""

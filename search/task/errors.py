"""The task's one error type, owned here so both data readers (`data`, `files`) import it from below."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A dataset that cannot be loaded; the message is one line: "<uri or file>: <problem>"."""

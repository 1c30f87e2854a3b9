"""Errors of the embedded stack: one line that says what went wrong and what to do."""

from mdmbus.errors import MdmbusError

__all__ = ["StackError"]


class StackError(MdmbusError):
    """The stack could not be started or stopped; the message says what to do about it."""

"""How the CLI words a failure: one line, whatever the exception's message looks like."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (drivers' messages span several), or its type."""
    return " ".join(str(exc).split()) or type(exc).__name__

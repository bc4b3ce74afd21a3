"""The errors of the security package that more than one of its modules raises."""

from __future__ import annotations


class TokenError(ValueError):
    """A token or assertion was refused; the message says why (never echoing the token)."""


__all__ = ["TokenError"]

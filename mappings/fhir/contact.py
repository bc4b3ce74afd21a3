"""Contact points (phone, fax, email) in comparable form. Pure.

The same fax number arrives as ``+1 (555) 010-2000``, ``555-010-2000`` or ``15550102000``; a Direct
address as ``mailto:Dr.Lee@Direct.Example``. :func:`normal_contact` turns each into one form, used
both to index ``telecom`` search parameters and to compare a sender with the directory.
"""

from __future__ import annotations

import re

__all__ = ["normal_contact"]


def normal_contact(system: str | None, value: str | None) -> str | None:
    """A contact point in comparable form: a fax or phone number as digits (a 10-digit North American
    number with its country code 1), an email (Direct) address lowercased without ``mailto:``;
    None when the value is not one of those (or too short to be a number)."""
    if not value:
        return None
    if system == "email":
        text = value.strip().lower().removeprefix("mailto:")
        return text if text.count("@") == 1 else None
    if system in ("fax", "phone", "sms", "pager"):
        digits = re.sub(r"\D", "", value)
        if len(digits) == 10:
            digits = "1" + digits
        return digits if len(digits) >= 7 else None
    return None

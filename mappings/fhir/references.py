"""Rewriting the literal references of a FHIR resource (or Bundle), without changing the input.

:func:`rewrite_references` is the one walk over a JSON tree: every Reference (any object whose
``reference`` is a string) is offered to a function that answers its replacement, or None to keep
it and walk inside it. :func:`replace_references` is the common case: reference strings looked up
in a mapping (e.g. a transaction Bundle's ``urn:uuid:`` full URLs -> the ``Type/id`` they became).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["replace_references", "rewrite_references"]

#: answers the replacement of one Reference, given the Reference and its ``reference`` string
Rewrite = Callable[[dict[str, Any], str], dict[str, Any] | None]


def rewrite_references(node: Any, rewrite: Rewrite, *, skip: Collection[str] = ()) -> Any:
    """A copy of ``node`` in which each Reference that ``rewrite(reference, text)`` answers with a dict
    is replaced by that dict. The walk does not enter a replaced Reference, nor the values of the keys
    in ``skip`` (e.g. ``contained`` resources and the ``text`` narrative), which are kept as they are."""
    if isinstance(node, list):
        return [rewrite_references(item, rewrite, skip=skip) for item in node]
    if not isinstance(node, dict):
        return node
    text = node.get("reference")
    if isinstance(text, str):
        replaced = rewrite(node, text)
        if replaced is not None:
            return replaced
    return {
        key: value if key in skip else rewrite_references(value, rewrite, skip=skip)
        for key, value in node.items()
    }


def replace_references(node: Any, mapping: Mapping[str, str]) -> Any:
    """A copy of ``node`` with every ``reference`` string found in ``mapping`` replaced by its value,
    everywhere (contained resources included, and references nested inside a replaced Reference)."""

    def replace(reference: dict[str, Any], text: str) -> dict[str, Any] | None:
        if text not in mapping:
            return None
        return {
            key: mapping[text] if key == "reference" else replace_references(value, mapping)
            for key, value in reference.items()
        }

    return rewrite_references(node, replace)

"""What the FHIR store asks the access policy of its caller.

A store is built with the policy of the one who calls it (:class:`hub.security.policy.AccessPolicy`
for API callers: scopes and the referrer compartment; :class:`hub.security.inbound.InboundPolicy`
for a partner's channel: the types it may write), or with none: the hub itself, no checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Caller(Protocol):
    @property
    def role(self) -> str: ...


class StorePolicy(Protocol):
    @property
    def principal(self) -> Caller: ...

    @property
    def restricted(self) -> bool:
        """Whether the caller sees only a compartment (what :meth:`visible` says)."""
        ...

    def check(self, resource_type: str, permission: str) -> None:
        """Raise unless the caller may do ``permission`` (one of c r u d s) on ``resource_type``."""

    def check_write(self, resource_type: str, resource: dict[str, Any]) -> None:
        """Raise unless the caller may write this content."""

    def may_read(self, resource_type: str) -> bool: ...

    def visible(self, resource_type: str, resource: dict[str, Any]) -> bool: ...

    def search_items(self, resource_type: str, items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The search parameters narrowed to what the caller may see."""
        ...

    def forbidden(self, what: str) -> Exception: ...


__all__ = ["Caller", "StorePolicy"]

"""Fax vendor profiles: one module per vendor API, each a :class:`~connectors.fax.profiles.base.FaxProfile`."""

from __future__ import annotations

from connectors.fax.profiles.base import FaxProfile, SignedWebhook, WebhookRefused
from connectors.fax.profiles.documo import DocumoProfile
from connectors.fax.profiles.phaxio import PhaxioProfile

__all__ = ["PROFILES", "DocumoProfile", "FaxProfile", "PhaxioProfile", "SignedWebhook", "WebhookRefused", "profile"]

PROFILES: dict[str, FaxProfile] = {"phaxio": PhaxioProfile(), "documo": DocumoProfile()}


def profile(name: str) -> FaxProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown fax profile {name!r} (known: {', '.join(PROFILES)})") from None

"""Connector registry: slug -> connector class, discovered from the ``therapy_hub.connectors``
entry-point group.

A package registers a connector in its ``pyproject.toml``::

    [project.entry-points."therapy_hub.connectors"]
    webhook = "connectors.webhook:WebhookConnector"

The entry point's name must equal the class's ``slug``. Loading is eager and fails fast with
:class:`RegistryError` (an installation problem, not a delivery problem) on a duplicate slug, a
name/slug mismatch, an entry point that cannot be imported or an object that is not a connector
class. Looking up an unknown slug or creating a connector from an invalid config raises
:class:`~connectors.base.ConfigError` (fields named, values never shown).

Use the module functions (:func:`get`, :func:`available`, :func:`create`, :func:`validate_config`),
which share one cached registry built from the installed entry points, or build a
:class:`ConnectorRegistry` from a given list of entry points (tests, plugins under evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from pydantic import BaseModel

from connectors import base
from connectors.base import ConfigError, Connector

__all__ = [
    "GROUP",
    "ConnectorRegistry",
    "RegistryError",
    "available",
    "create",
    "default_registry",
    "get",
    "validate_config",
]

GROUP = "therapy_hub.connectors"
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,62}")


class RegistryError(RuntimeError):
    """The installed connectors are inconsistent (duplicate slug, bad entry point). Fix the install."""


class ConnectorRegistry:
    """An immutable slug -> connector class map built from entry points."""

    def __init__(self, eps: Iterable[EntryPoint]) -> None:
        classes: dict[str, type[Connector]] = {}
        origins: dict[str, str] = {}
        for ep in eps:
            if ep.name in origins:
                if origins[ep.name] == ep.value:
                    continue  # the same registration seen twice (e.g. two metadata copies)
                raise RegistryError(
                    f"duplicate connector slug {ep.name!r}: {origins[ep.name]} and {ep.value}"
                )
            classes[ep.name] = _load(ep)
            origins[ep.name] = ep.value
        self._classes = dict(sorted(classes.items()))
        self._origins = origins

    @classmethod
    def from_installed(cls, group: str = GROUP) -> ConnectorRegistry:
        return cls(entry_points(group=group))

    def available(self) -> list[str]:
        """Registered slugs, sorted."""
        return list(self._classes)

    def get(self, slug: str) -> type[Connector]:
        try:
            return self._classes[slug]
        except KeyError:
            known = ", ".join(self._classes) or "none"
            raise ConfigError(f"unknown connector {slug!r} (available: {known})", fields=["slug"]) from None

    def validate_config(self, slug: str, config: Mapping[str, Any] | BaseModel) -> BaseModel:
        """The validated config model; raises ConfigError naming the invalid fields."""
        return base.validate_config(self.get(slug).Config, config, connector=slug)

    def create(self, slug: str, config: Mapping[str, Any] | BaseModel) -> Connector:
        """A new connector instance (the caller closes it)."""
        cls = self.get(slug)
        return cls(self.validate_config(slug, config))

    def __contains__(self, slug: object) -> bool:
        return slug in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


def _load(ep: EntryPoint) -> type[Connector]:
    where = f"entry point {ep.name!r} ({ep.value}) in group {ep.group or GROUP!r}"
    if not _SLUG.fullmatch(ep.name):
        raise RegistryError(f"{where}: the name must match [a-z][a-z0-9_]* (max 63 characters)")
    try:
        obj = ep.load()
    except Exception as exc:  # ImportError, AttributeError, or anything the module raises
        raise RegistryError(f"{where}: cannot be loaded ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, type):
        raise RegistryError(f"{where}: {obj!r} is not a class")
    slug = getattr(obj, "slug", None)
    if slug != ep.name:
        raise RegistryError(f"{where}: the class's slug is {slug!r}, not {ep.name!r}")
    config_model = getattr(obj, "Config", None)
    if not (isinstance(config_model, type) and issubclass(config_model, BaseModel)):
        raise RegistryError(f"{where}: Config must be a pydantic model class")
    missing = [name for name in ("send", "health", "close") if not callable(getattr(obj, name, None))]
    if missing:
        raise RegistryError(f"{where}: missing method(s) {', '.join(missing)}")
    return cast(type[Connector], obj)


@cache
def default_registry() -> ConnectorRegistry:
    """The registry of installed connectors, built once per process (``default_registry.cache_clear()``)."""
    return ConnectorRegistry.from_installed()


def available() -> list[str]:
    return default_registry().available()


def get(slug: str) -> type[Connector]:
    return default_registry().get(slug)


def validate_config(slug: str, config: Mapping[str, Any] | BaseModel) -> BaseModel:
    return default_registry().validate_config(slug, config)


def create(slug: str, config: Mapping[str, Any] | BaseModel) -> Connector:
    return default_registry().create(slug, config)

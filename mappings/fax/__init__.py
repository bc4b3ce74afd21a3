"""Fax documents the hub makes (the cover sheet in front of a plan of care)."""

from __future__ import annotations

from mappings.fax.cover import CoverSheet, render_cover_sheet

__all__ = ["CoverSheet", "render_cover_sheet"]

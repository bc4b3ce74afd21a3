"""The fax connector: plans of care to referrers' fax numbers through a fax API vendor."""

from __future__ import annotations

from connectors.fax.connector import FaxConfig, FaxConnector

__all__ = ["FaxConfig", "FaxConnector"]

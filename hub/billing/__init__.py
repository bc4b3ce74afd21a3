"""Billing: claims from the store's visits, scrubbed with what only the store knows, written as X12
837P files delivered by the sync engine, and the 999/277CA/835/271 that come back (ADR 0013)."""

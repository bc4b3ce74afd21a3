"""The one error of the billing mappings: data a claim needs is missing or unusable."""

from __future__ import annotations

__all__ = ["ClaimDataError"]


class ClaimDataError(ValueError):
    """``path`` is the FHIR path of what is missing or wrong (``Claim.provider -> Organization.identifier
    (NPI)``); ``message`` says the rule. Neither ever holds a patient's data."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message

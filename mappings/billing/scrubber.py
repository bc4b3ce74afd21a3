"""The claim scrubber: :func:`scrub` checks one :class:`ProfessionalClaim` before it goes out.

Each :class:`Finding` names its rule (a stable id), the line (``None`` for the claim), what is wrong
(codes and numbers, never the patient) and how to fix it. Errors keep the claim from going out;
warnings are shown. The rules, by module of :mod:`mappings.billing.rules`:

* ``units``: ``units.cms-8-minute`` / ``units.per-code`` (units disagree with the documented minutes
  by the payer's rule, naming the expected units), ``units.untimed`` (an untimed code not billed as 1)
* ``modifiers``: ``modifier.discipline`` (GP/GO/GN missing, several, against the plan of care or the
  evaluation code), ``modifier.assistant`` (CQ/CO missing on an assistant's line or wrong; warning
  when present without an assistant), ``modifier.kx`` (threshold passed, no KX),
  ``modifier.kx-unneeded`` (warning: KX below the threshold), ``modifier.count`` (more than four)
* ``plans``: ``plan.missing`` (no plan of care on file covers the date), ``plan.not-certified``
  (warning: Medicare takes a delayed certification)
* ``identifiers``: ``npi.missing``, ``npi.check-digit`` (billing, rendering, referring), ``ein.format``,
  ``icd10.format``, ``claim.control-number``
* ``structure``: ``diagnosis.missing``, ``diagnosis.too-many``, ``diagnosis.pointer``, ``ncci.pair``,
  ``mue.units``, ``claim.total``, ``claim.lines-max``

Pure: the hub fetches the plans on file and the year's amounts and passes them in a
:class:`ScrubContext`.
"""

from __future__ import annotations

from mappings.billing.model import Finding, ProfessionalClaim, ScrubContext
from mappings.billing.rules import identifiers, modifiers, plans, structure, units

__all__ = ["blocking", "scrub"]

_RULES = (units.check, modifiers.check, plans.check, identifiers.check, structure.check)


def scrub(claim: ProfessionalClaim, context: ScrubContext) -> list[Finding]:
    """Every finding on ``claim``, claim-level first, then by line, errors before warnings."""
    found = [finding for rule in _RULES for finding in rule(claim, context)]
    return sorted(found, key=lambda f: (f.line or 0, f.severity != "error", f.rule))


def blocking(findings: list[Finding]) -> bool:
    """Whether any finding is an error (the claim must not go out)."""
    return any(f.severity == "error" for f in findings)

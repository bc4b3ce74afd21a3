"""Identifiers and codes: NPI check digits (``npi.check-digit``, ``npi.missing``), the billing
provider's EIN (``ein.format``), ICD-10-CM format (``icd10.format``) and the patient control number
(``claim.control-number``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from mappings.billing.codes import ICD10CM_PATTERN, npi_is_valid
from mappings.billing.model import Finding, Party, ProfessionalClaim, ScrubContext

_EIN = re.compile(r"[0-9]{9}")
#: what the control number may hold so that it survives the X12 file and comes back on the 835
_PCN = re.compile(r"[A-Za-z0-9-]{1,20}")


def _npi(party: Party | None, role: str, line: int | None, required: bool) -> Iterator[Finding]:
    if party is None:
        return
    if not party.npi:
        if required:
            yield Finding(
                rule="npi.missing",
                severity="error",
                line=line,
                message=f"the {role} provider has no NPI",
                fix=f"record the {role} provider's NPI",
            )
        return
    if not npi_is_valid(party.npi):
        yield Finding(
            rule="npi.check-digit",
            severity="error",
            line=line,
            message=f"the {role} provider's NPI is not ten digits with a valid check digit",
            fix=f"correct the {role} provider's NPI (NPPES registry)",
        )


def check(claim: ProfessionalClaim, context: ScrubContext) -> Iterator[Finding]:
    yield from _npi(claim.billing_provider, "billing", None, True)
    yield from _npi(claim.rendering_provider, "rendering", None, True)
    yield from _npi(claim.referring_provider, "referring", None, True)
    for line in claim.lines:
        yield from _npi(line.rendering, "line rendering", line.line_number, True)
    tax_id = claim.billing_provider.tax_id
    if tax_id is None or not _EIN.fullmatch(tax_id):
        yield Finding(
            rule="ein.format",
            severity="error",
            message="the billing provider's EIN is missing or not nine digits",
            fix="record the EIN as nine digits, without the dash",
        )
    for number, code in enumerate(claim.diagnoses, start=1):
        if not ICD10CM_PATTERN.fullmatch(code):
            yield Finding(
                rule="icd10.format",
                severity="error",
                message=f"diagnosis {number} ({code!r}) is not an ICD-10-CM code as the claim writes it",
                fix="a letter, a digit, then up to five letters or digits, upper case, without the dot",
            )
    if not _PCN.fullmatch(claim.patient_control_number):
        yield Finding(
            rule="claim.control-number",
            severity="error",
            message="the patient control number must be 1 to 20 letters, digits or dashes",
            fix="allocate a shorter claim number of letters and digits",
        )

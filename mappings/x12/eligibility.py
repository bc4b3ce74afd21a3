"""An eligibility inquiry (what the 270 asks) and how it is read from FHIR R4 Coverage, Patient, Organization.

:func:`inquiry_from_fhir` reads plain FHIR JSON (dicts): ``Coverage.subscriberId`` (the member id),
``Coverage.relationship`` (subscriber-relationship code -> X12 individual relationship code),
``Coverage.class`` of type ``group`` (the group number), the payer Organization (its name and the
clearinghouse payer id: the identifier ``Coverage.payor`` names, else the Organization's first
identifier that is not an NPI), the provider Organization (name and NPI, system
``http://hl7.org/fhir/sid/us-npi``) and the Patient (name, birth date, gender, address). When the
patient is not the subscriber, the subscriber's Patient or RelatedPerson is passed as ``subscriber``.
Missing data raises :class:`InquiryError` naming the FHIR path and the rule, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mappings.billing.model import NPI_SYSTEM, Address, Party, Person

#: X12 service type codes (EQ01) per therapy discipline
DISCIPLINE_SERVICE_TYPES: dict[str, str] = {"PT": "PT", "OT": "AD", "SLP": "AF"}

#: http://terminology.hl7.org/CodeSystem/subscriber-relationship -> X12 individual relationship code
RELATIONSHIP_CODES = {"self": "18", "spouse": "01", "child": "19", "common": "53", "parent": "G8",
                      "other": "G8", "injured": "G8"}
_GENDERS: dict[str, Literal["M", "F", "U"]] = {"male": "M", "female": "F"}


class InquiryError(ValueError):
    """The FHIR resources do not hold what a 270 needs: ``path`` names where, ``rule`` which check."""

    def __init__(self, message: str, *, path: str, rule: str) -> None:
        super().__init__(f"{path}: {message} [{rule}]")
        self.path = path
        self.rule = rule


class InquiryPayer(BaseModel):
    """The information source (2100A): the payer's name and its clearinghouse payer id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    payer_id: str


class EligibilityInquiry(BaseModel):
    """One 270 question: is ``patient`` (or the subscriber) covered for these services on that date."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Party  # 2100B information receiver, with NPI
    payer: InquiryPayer  # 2100A information source
    subscriber: Person  # 2100C, with member_id
    patient: Person | None = None  # 2100D when the patient is a dependent
    relationship: str = "18"  # INS02 of the dependent (X12 individual relationship code)
    group_number: str | None = None  # REF*6P
    service_types: tuple[str, ...] = Field(min_length=1, max_length=99)  # EQ01: "PT", "AD", "AF", "30"...
    on: date  # DTP*291
    trace: str = Field(min_length=1, max_length=50)  # TRN02, comes back in the 271


def inquiry_from_fhir(
    coverage: Mapping[str, Any],
    patient: Mapping[str, Any],
    provider_org: Mapping[str, Any],
    payer_org: Mapping[str, Any],
    *,
    service_types: Sequence[str],
    on: date,
    trace: str,
    subscriber: Mapping[str, Any] | None = None,
) -> EligibilityInquiry:
    """The inquiry for ``patient`` under ``coverage`` (see the module docstring for what is read where)."""
    relationship = _relationship(coverage)
    member_id = coverage.get("subscriberId")
    if not isinstance(member_id, str) or not member_id.strip():
        raise InquiryError("the member id is required", path="Coverage.subscriberId", rule="270.member-id")
    if relationship == "18":
        insured = _person(patient, "Patient", member_id=member_id.strip())
        dependent = None
    else:
        if subscriber is None:
            raise InquiryError("the patient is not the subscriber: the subscriber's resource is needed",
                               path="Coverage.subscriber", rule="270.subscriber")
        insured = _person(subscriber, str(subscriber.get("resourceType") or "subscriber"), member_id=member_id.strip())
        dependent = _person(patient, "Patient", member_id=None)
    return EligibilityInquiry(
        provider=_provider(provider_org), payer=_payer(coverage, payer_org), subscriber=insured, patient=dependent,
        relationship=relationship, group_number=_group(coverage), service_types=tuple(service_types), on=on,
        trace=trace,
    )


def _relationship(coverage: Mapping[str, Any]) -> str:
    codings = (coverage.get("relationship") or {}).get("coding") or []
    for coding in codings:
        code = RELATIONSHIP_CODES.get(str(coding.get("code", "")).lower())
        if code:
            return code
    if codings:
        raise InquiryError("no known subscriber-relationship code", path="Coverage.relationship",
                           rule="270.relationship")
    return "18"


def _group(coverage: Mapping[str, Any]) -> str | None:
    for item in coverage.get("class") or []:
        codes = [str(c.get("code", "")) for c in (item.get("type") or {}).get("coding") or []]
        if "group" in codes and item.get("value"):
            return str(item["value"])
    return None


def _provider(org: Mapping[str, Any]) -> Party:
    npi = next((str(i["value"]) for i in org.get("identifier") or []
                if i.get("system") == NPI_SYSTEM and i.get("value")), None)
    if npi is None:
        raise InquiryError("the provider organization has no NPI", path="Organization.identifier",
                           rule="270.provider-npi")
    name = org.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InquiryError("the provider organization has no name", path="Organization.name", rule="270.provider-name")
    return Party(last_or_org_name=name, npi=npi)


def _payer(coverage: Mapping[str, Any], org: Mapping[str, Any]) -> InquiryPayer:
    payors = coverage.get("payor") or []
    named = next((p.get("identifier", {}).get("value") for p in payors
                  if isinstance(p.get("identifier"), dict) and p["identifier"].get("value")), None)
    payer_id = named or next((str(i["value"]) for i in org.get("identifier") or []
                              if i.get("system") != NPI_SYSTEM and i.get("value")), None)
    if not payer_id:
        raise InquiryError("the payer has no payer id", path="Coverage.payor.identifier", rule="270.payer-id")
    name = org.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InquiryError("the payer organization has no name", path="Organization.name", rule="270.payer-name")
    return InquiryPayer(name=name, payer_id=str(payer_id))


def _person(resource: Mapping[str, Any], kind: str, *, member_id: str | None) -> Person:
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if not name or not name.get("family") or not name.get("given"):
        raise InquiryError("a family and a given name are required", path=f"{kind}.name", rule="270.name")
    given = [str(g) for g in name["given"]]
    birth = resource.get("birthDate")
    try:
        birth_date = date.fromisoformat(str(birth))
    except ValueError:
        raise InquiryError("a full birth date (YYYY-MM-DD) is required", path=f"{kind}.birthDate",
                           rule="270.birth-date") from None
    addresses = resource.get("address") or []
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else None)
    if not home or not home.get("line") or not home.get("city") or not home.get("state") or not home.get("postalCode"):
        raise InquiryError("a postal address (line, city, state, postal code) is required", path=f"{kind}.address",
                           rule="270.address")
    lines = [str(x) for x in home["line"]]
    return Person(
        last_name=str(name["family"]), first_name=given[0], middle_name=given[1] if len(given) > 1 else None,
        member_id=member_id, birth_date=birth_date, gender=_GENDERS.get(str(resource.get("gender", "")), "U"),
        address=Address(line1=lines[0], line2=lines[1] if len(lines) > 1 else None, city=str(home["city"]),
                        state=str(home["state"]), postal_code=str(home["postalCode"])),
    )

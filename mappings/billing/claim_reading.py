"""A FHIR R4 ``Claim`` + the resources it points to -> :class:`~mappings.billing.model.ProfessionalClaim`.

Liberal about how another system writes the claim: ``productOrService`` in the CPT or the HCPCS
system (else the only coding there is), diagnoses as codeable concepts or as ``diagnosisReference``
to a Condition, dates as ``servicedDate`` or ``servicedPeriod`` (else ``billablePeriod``), line
charges as ``net`` or ``unitPrice`` x ``quantity``, references as ``Type/id``, absolute URLs or
``#contained``. What the 837P cannot go without raises :class:`ClaimDataError` naming the FHIR path
(``Claim.provider -> Organization.identifier (NPI)``); messages never carry patient data.

Replacement and void: ``related`` with relationship ``prior`` and the payer's claim number in
``reference.value`` makes frequency 7 (replacement) with that number as the original reference, or
8 (void) when the Claim's status is ``cancelled`` or ``entered-in-error``.

Where things come from: billing provider ``Claim.provider`` (Organization, or Practitioner) with
NPI, EIN (``TAX_ID_SYSTEM``) and a NUCC taxonomy in ``Organization.type``; rendering provider the
``careTeam`` member with role ``primary`` (else ``responsible``, else the first therapist), a
Practitioner or PractitionerRole (NUCC taxonomy from ``qualification`` or ``PractitionerRole.code``);
referring provider ``Claim.referral`` (ServiceRequest) -> ``requester``, else the plan of care's
referral; subscriber, member id, relationship, group, payer and claim filing indicator from the
focal ``insurance`` Coverage (``subscriber`` else ``beneficiary``; ``subscriberId``; ``class`` group;
``payor[0]`` Organization with a :data:`PAYER_ID_SYSTEM` identifier; ``type`` coding in
:data:`FILING_INDICATOR_SYSTEM`, else a Source of Payment Typology code); discipline from the
CarePlan in ``supportingInfo``, else the lines' GP/GO/GN, else an evaluation code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from mappings.billing.codes import (
    CLAIM_INFO_SYSTEM,
    EVALUATION_DISCIPLINE,
    FILING_INDICATOR_SYSTEM,
    LINE_CONTROL_EXTENSION,
    MODIFIER_DISCIPLINE,
    NUCC_TAXONOMY_SYSTEM,
    PAYER_ID_SYSTEM,
    TIMED_MINUTES_EXTENSION,
)
from mappings.billing.errors import ClaimDataError
from mappings.billing.fhir_read import careplan_discipline, coding_in, reference_text
from mappings.billing.model import (
    CPT_SYSTEM,
    HCPCS_SYSTEM,
    ICD10CM_SYSTEM,
    NPI_SYSTEM,
    PATIENT_CONTROL_SYSTEM,
    POS_SYSTEM,
    TAX_ID_SYSTEM,
    Address,
    Discipline,
    Party,
    Payer,
    Person,
    ProfessionalClaim,
    ServiceLine,
)

__all__ = ["professional_claim"]

SOPT_SYSTEM = "urn:oid:2.16.840.1.113883.3.221.5"
#: Source of Payment Typology first digits -> claim filing indicator
_SOPT: dict[str, str] = {"1": "MB", "2": "MC", "31": "CH", "32": "VA", "5": "CI", "6": "BL", "95": "WC"}
_RELATIONSHIP = {"self": "18", "spouse": "01", "child": "19"}
_GENDER = {"male": "M", "female": "F"}
_ASSISTANT_CODES = {"assistant", "assist", "PTA", "COTA", "OTA"}


class _Reader:
    def __init__(self, claim: dict[str, Any], resources: Mapping[str, dict[str, Any]]) -> None:
        self.claim = claim
        self.resources = resources
        self.contained = {f"#{r.get('id')}": r for r in claim.get("contained") or [] if isinstance(r, dict)}

    def get(self, reference: Any, kinds: tuple[str, ...], path: str) -> dict[str, Any]:
        text = reference_text(reference)
        if text is None:
            raise ClaimDataError(path, "no reference")
        raw = reference.get("reference") if isinstance(reference, dict) else None
        found = self.contained.get(text) or self.resources.get(text) or self.resources.get(str(raw))
        if found is None:
            raise ClaimDataError(path, f"the {' or '.join(kinds)} it points to was not passed in")
        if found.get("resourceType") not in kinds:
            raise ClaimDataError(path, f"points to a {found.get('resourceType')}, expected {' or '.join(kinds)}")
        return found


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    for identifier in resource.get("identifier") or []:
        if identifier.get("system") == system and identifier.get("value"):
            return str(identifier["value"])
    return None


def _address(resource: dict[str, Any]) -> Address | None:
    for address in resource.get("address") or []:
        lines = address.get("line") or []
        postal = "".join(ch for ch in str(address.get("postalCode", "")) if ch.isdigit())
        if lines and address.get("city") and address.get("state") and postal:
            return Address(
                line1=lines[0],
                line2=lines[1] if len(lines) > 1 else None,
                city=address["city"],
                state=address["state"],
                postal_code=postal,
            )
    return None


def _phone(resource: dict[str, Any]) -> str | None:
    for telecom in resource.get("telecom") or []:
        if telecom.get("system") == "phone" and telecom.get("value"):
            return "".join(ch for ch in str(telecom["value"]) if ch.isdigit()) or None
    return None


def _taxonomy(concepts: list[Any]) -> str | None:
    for concept in concepts:
        coding = coding_in(concept, NUCC_TAXONOMY_SYSTEM)
        if coding is not None and coding.get("code"):
            return str(coding["code"])
    return None


def _organization(org: dict[str, Any], path: str) -> Party:
    if not org.get("name"):
        raise ClaimDataError(f"{path}.name", "the organisation has no name")
    tax_id = _identifier(org, TAX_ID_SYSTEM)
    return Party(
        last_or_org_name=org["name"],
        npi=_identifier(org, NPI_SYSTEM),
        tax_id=tax_id.replace("-", "") if tax_id else None,
        taxonomy=_taxonomy(list(org.get("type") or [])),
        address=_address(org),
        phone=_phone(org),
    )


def _name(resource: dict[str, Any], path: str) -> tuple[str, str | None, str | None]:
    names = resource.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if not name or not name.get("family"):
        raise ClaimDataError(f"{path}.name.family", "no family name")
    given = name.get("given") or []
    return name["family"], given[0] if given else None, given[1] if len(given) > 1 else None


def _practitioner(reader: _Reader, reference: Any, path: str) -> Party:
    resource = reader.get(reference, ("Practitioner", "PractitionerRole", "Organization"), path)
    if resource["resourceType"] == "Organization":
        return _organization(resource, f"{path} -> Organization")
    role_taxonomy = None
    npi_of_role = None
    if resource["resourceType"] == "PractitionerRole":
        role_taxonomy = _taxonomy(list(resource.get("code") or []))
        npi_of_role = _identifier(resource, NPI_SYSTEM)
        path = f"{path} -> PractitionerRole.practitioner"
        resource = reader.get(resource.get("practitioner"), ("Practitioner",), path)
    family, given, middle = _name(resource, f"{path} -> Practitioner")
    taxonomy = role_taxonomy or _taxonomy([q.get("code") for q in resource.get("qualification") or []])
    return Party(
        last_or_org_name=family,
        first_name=given,
        middle_name=middle,
        npi=_identifier(resource, NPI_SYSTEM) or npi_of_role,
        taxonomy=taxonomy,
        address=_address(resource),
    )


def _person(resource: dict[str, Any], path: str, member_id: str | None) -> Person:
    family, given, middle = _name(resource, path)
    if given is None:
        raise ClaimDataError(f"{path}.name.given", "no given name")
    if not resource.get("birthDate"):
        raise ClaimDataError(f"{path}.birthDate", "no date of birth")
    address = _address(resource)
    if address is None:
        raise ClaimDataError(f"{path}.address", "no address with line, city, state and postal code")
    return Person(
        last_name=family,
        first_name=given,
        middle_name=middle,
        member_id=member_id,
        birth_date=date.fromisoformat(str(resource["birthDate"])[:10]),
        gender=_GENDER.get(str(resource.get("gender")), "U"),  # type: ignore[arg-type]
        address=address,
    )


def _filing_indicator(coverage: dict[str, Any], path: str) -> str:
    kind = coverage.get("type")
    coding = coding_in(kind, FILING_INDICATOR_SYSTEM)
    if coding is not None and coding.get("code"):
        return str(coding["code"])
    sopt = coding_in(kind, SOPT_SYSTEM)
    if sopt is not None:
        code = str(sopt.get("code", ""))
        for prefix in sorted(_SOPT, key=len, reverse=True):
            if code.startswith(prefix):
                return _SOPT[prefix]
    raise ClaimDataError(f"{path}.type", "no claim filing indicator (nor a Source of Payment Typology code)")


def _is_assistant(member: dict[str, Any]) -> bool:
    codes = {c.get("code") for key in ("role", "qualification") for c in (member.get(key) or {}).get("coding") or []}
    return bool(codes & _ASSISTANT_CODES)


def _date(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _supporting(claim: dict[str, Any], code: str) -> dict[str, Any] | None:
    """The supportingInfo entry with ``code`` in the hub's claim-information system (``onset``: the
    HL7 category ``onset``)."""
    for info in claim.get("supportingInfo") or []:
        coding = coding_in(info.get("code"), CLAIM_INFO_SYSTEM)
        if coding is not None and coding.get("code") == code:
            return dict(info)
        categories = (info.get("category") or {}).get("coding") or []
        if code == "onset" and any(c.get("code") == "onset" for c in categories):
            return dict(info)
    return None


def professional_claim(claim: dict[str, Any], resources: Mapping[str, dict[str, Any]]) -> ProfessionalClaim:
    """The flat claim of ``claim`` (FHIR R4 Claim dict); ``resources`` maps ``Type/id`` to the resources
    it points to. Raises :class:`ClaimDataError` naming the FHIR path of what is missing."""
    if claim.get("resourceType") != "Claim":
        raise ClaimDataError("Claim.resourceType", "not a Claim")
    reader = _Reader(claim, resources)
    identifiers = claim.get("identifier") or []
    pcn = next((i.get("value") for i in identifiers if i.get("system") == PATIENT_CONTROL_SYSTEM), None)
    pcn = pcn or next((i.get("value") for i in identifiers if i.get("value")), None)
    if not pcn:
        raise ClaimDataError("Claim.identifier", "no patient control number")
    if len(str(pcn)) > 20:
        raise ClaimDataError("Claim.identifier", "the patient control number is longer than 20 characters")

    billing_res = reader.get(claim.get("provider"), ("Organization", "Practitioner"), "Claim.provider")
    if billing_res["resourceType"] == "Organization":
        billing = _organization(billing_res, "Claim.provider -> Organization")
    else:
        billing = _practitioner(reader, claim.get("provider"), "Claim.provider")
    if not billing.npi:
        raise ClaimDataError(f"Claim.provider -> {billing_res['resourceType']}.identifier (NPI)", "no NPI")

    team = {m.get("sequence"): m for m in claim.get("careTeam") or []}
    primary = next(
        (
            m
            for m in team.values()
            if any(c.get("code") == "primary" for c in (m.get("role") or {}).get("coding") or [])
        ),
        None,
    )
    primary = primary or next((m for m in team.values() if m.get("responsible")), None)
    primary = primary or next((m for m in team.values() if not _is_assistant(m)), None)
    parties: dict[Any, Party] = {}
    for number, member in enumerate(claim.get("careTeam") or []):
        parties[member.get("sequence")] = _practitioner(
            reader, member.get("provider"), f"Claim.careTeam[{number}].provider"
        )
    rendering = parties.get(primary.get("sequence")) if primary else None

    insurances = claim.get("insurance") or []
    if not insurances:
        raise ClaimDataError("Claim.insurance", "no insurance")
    insurance = next((i for i in insurances if i.get("focal")), insurances[0])
    number = insurances.index(insurance)
    cov_path = f"Claim.insurance[{number}].coverage -> Coverage"
    coverage = reader.get(insurance.get("coverage"), ("Coverage",), f"Claim.insurance[{number}].coverage")
    member_id = coverage.get("subscriberId") or next(
        (i.get("value") for i in coverage.get("identifier") or [] if i.get("value")), None
    )
    if not member_id:
        raise ClaimDataError(f"{cov_path}.subscriberId", "no member id")
    relationship_code = next((c.get("code") for c in (coverage.get("relationship") or {}).get("coding") or []), "self")
    relationship = _RELATIONSHIP.get(str(relationship_code), "G8")
    subscriber_ref = coverage.get("subscriber") or coverage.get("beneficiary")
    subscriber_res = reader.get(subscriber_ref, ("Patient", "RelatedPerson"), f"{cov_path}.subscriber")
    subscriber = _person(subscriber_res, f"{cov_path}.subscriber -> {subscriber_res['resourceType']}", str(member_id))
    patient = None
    if relationship != "18":
        patient = _person(
            reader.get(claim.get("patient"), ("Patient",), "Claim.patient"), "Claim.patient -> Patient", None
        )
    payors = coverage.get("payor") or []
    if not payors:
        raise ClaimDataError(f"{cov_path}.payor", "no payer")
    payer_res = reader.get(payors[0], ("Organization",), f"{cov_path}.payor[0]")
    payer_id = _identifier(payer_res, PAYER_ID_SYSTEM) or next(
        (
            i.get("value")
            for i in payer_res.get("identifier") or []
            if i.get("value") and i.get("system") not in (NPI_SYSTEM, TAX_ID_SYSTEM)
        ),
        None,
    )
    if not payer_id or not payer_res.get("name"):
        raise ClaimDataError(f"{cov_path}.payor[0] -> Organization.identifier (payer id)", "no payer id or name")
    payer = Payer.model_validate(
        {
            "name": payer_res["name"],
            "payer_id": payer_id,
            "address": _address(payer_res),
            "filing_indicator": _filing_indicator(coverage, cov_path),
        }
    )
    group = next(
        (
            c.get("value")
            for c in coverage.get("class") or []
            if any(t.get("code") == "group" for t in (c.get("type") or {}).get("coding") or [])
        ),
        None,
    )

    referring = None
    plan = None
    for info in claim.get("supportingInfo") or []:
        text = reference_text(info.get("valueReference"))
        if text and text.startswith("CarePlan/") and (text in resources or text in reader.contained):
            plan = reader.get(info["valueReference"], ("CarePlan",), "Claim.supportingInfo.valueReference")
    referral_ref = claim.get("referral")
    if referral_ref is None and plan is not None:
        referral_ref = next(
            (s for s in plan.get("supportingInfo") or [] if str(reference_text(s)).startswith("ServiceRequest/")), None
        )
    if referral_ref is not None:
        request = reader.get(referral_ref, ("ServiceRequest",), "Claim.referral")
        if request.get("requester"):
            referring = _practitioner(reader, request["requester"], "Claim.referral -> ServiceRequest.requester")

    diagnoses: list[str] = []
    pointer_of: dict[Any, int] = {}
    for d_number, entry in sorted(
        enumerate(claim.get("diagnosis") or []), key=lambda d: (d[1].get("sequence", 0), d[0])
    ):
        concept = entry.get("diagnosisCodeableConcept")
        if concept is None and entry.get("diagnosisReference"):
            condition = reader.get(
                entry["diagnosisReference"], ("Condition",), f"Claim.diagnosis[{d_number}].diagnosisReference"
            )
            concept = condition.get("code")
        coding = coding_in(concept, ICD10CM_SYSTEM)
        if coding is None or not coding.get("code"):
            raise ClaimDataError(f"Claim.diagnosis[{d_number}]", "no ICD-10-CM code")
        diagnoses.append(str(coding["code"]).replace(".", "").upper())
        pointer_of[entry.get("sequence")] = len(diagnoses)

    items = sorted(enumerate(claim.get("item") or []), key=lambda i: (i[1].get("sequence", 0), i[0]))
    if not items:
        raise ClaimDataError("Claim.item", "no service line")
    places = [
        str(c["code"])
        for _, item in items
        if (c := coding_in(item.get("locationCodeableConcept"), POS_SYSTEM)) is not None and c.get("code")
    ]
    claim_place = Counter(places).most_common(1)[0][0] if places else "11"
    billable_start = (claim.get("billablePeriod") or {}).get("start")
    lines = []
    for line_number, (i_number, item) in enumerate(items, start=1):
        path = f"Claim.item[{i_number}]"
        product = item.get("productOrService")
        coding = coding_in(product, CPT_SYSTEM) or coding_in(product, HCPCS_SYSTEM)
        codings = (product or {}).get("coding") or []
        if coding is None and len(codings) == 1:
            coding = codings[0]
        if coding is None or not coding.get("code"):
            raise ClaimDataError(f"{path}.productOrService", "no CPT or HCPCS code")
        units = Decimal(str((item.get("quantity") or {}).get("value", 1)))
        net = (item.get("net") or {}).get("value")
        price = (item.get("unitPrice") or {}).get("value")
        if net is None and price is None:
            raise ClaimDataError(f"{path}.net", "no charge (net or unitPrice)")
        charge = Decimal(str(net)) if net is not None else Decimal(str(price)) * units
        served = item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start") or billable_start
        if not served:
            raise ClaimDataError(f"{path}.servicedDate", "no date of service")
        extensions = item.get("extension") or []
        minutes = next(
            (
                int(e["valueInteger"])
                for e in extensions
                if e.get("url") == TIMED_MINUTES_EXTENSION and "valueInteger" in e
            ),
            None,
        )
        control = next(
            (
                (e.get("valueIdentifier") or {}).get("value") or e.get("valueString")
                for e in extensions
                if e.get("url") == LINE_CONTROL_EXTENSION
            ),
            None,
        )
        pos = coding_in(item.get("locationCodeableConcept"), POS_SYSTEM)
        members = [team[s] for s in item.get("careTeamSequence") or [] if s in team]
        therapist = next((m for m in members if not _is_assistant(m)), None)
        line_rendering = parties.get(therapist.get("sequence")) if therapist else None
        lines.append(
            ServiceLine(
                line_number=line_number,
                control_number=str(control or f"{pcn}-{item.get('sequence', line_number)}"),
                code=str(coding["code"]).upper(),
                modifiers=tuple(
                    str(c["coding"][0]["code"]).upper()
                    for c in item.get("modifier") or []
                    if (c.get("coding") or [{}])[0].get("code")
                ),
                charge=charge.quantize(Decimal("0.01")),
                units=units,
                minutes=minutes,
                service_date=date.fromisoformat(str(served)[:10]),
                place_of_service=str(pos["code"]) if pos and pos.get("code") and pos["code"] != claim_place else None,
                diagnosis_pointers=tuple(pointer_of.get(s, s) for s in item.get("diagnosisSequence") or []),
                rendering=line_rendering if line_rendering is not None and line_rendering != rendering else None,
                rendering_is_assistant=any(_is_assistant(m) for m in members),
                encounter_ref=reference_text((item.get("encounter") or [None])[0]),
            )
        )

    discipline: Discipline | None = careplan_discipline(plan) if plan else None
    if discipline is None:
        found = Counter(MODIFIER_DISCIPLINE[m] for line in lines for m in line.modifiers if m in MODIFIER_DISCIPLINE)
        discipline = (
            found.most_common(1)[0][0]
            if found
            else next((EVALUATION_DISCIPLINE[x.code] for x in lines if x.code in EVALUATION_DISCIPLINE), None)
        )
    onset = _supporting(claim, "onset")
    initial = _supporting(claim, "initial-treatment")
    sequence = insurance.get("sequence", 1)
    prior = next(
        (
            r["reference"]["value"]
            for r in claim.get("related") or []
            if (r.get("reference") or {}).get("value")
            and any(c.get("code") == "prior" for c in (r.get("relationship") or {}).get("coding") or [])
        ),
        None,
    )
    frequency = "1" if prior is None else ("8" if claim.get("status") in ("cancelled", "entered-in-error") else "7")
    return ProfessionalClaim(
        patient_control_number=str(pcn),
        claim_ref=f"Claim/{claim['id']}" if claim.get("id") else None,
        frequency_code=frequency,  # type: ignore[arg-type]
        original_reference=str(prior) if prior is not None else None,
        place_of_service=claim_place,
        billing_provider=billing,
        rendering_provider=rendering,
        referring_provider=referring,
        subscriber=subscriber,
        patient=patient,
        relationship=relationship,
        payer=payer,
        payer_responsibility={1: "P", 2: "S", 3: "T"}.get(sequence, "P"),  # type: ignore[arg-type]
        group_number=group,
        prior_authorization=next(iter(insurance.get("preAuthRef") or []), None),
        diagnoses=tuple(diagnoses),
        onset_date=_date(onset.get("timingDate")) if onset else None,
        initial_treatment_date=_date(initial.get("timingDate")) if initial else None,
        discipline=discipline,
        lines=tuple(lines),
    )

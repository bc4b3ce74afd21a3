"""The 837 professional claim, ASC X12 005010X222A1, written from :class:`ProfessionalClaim`\\ s.

One file = one interchange, one functional group (GS01 ``HC``), one transaction set. The claims are
hung in the HL hierarchy the guide asks for: one 2000A per billing provider, under it one 2000B per
subscriber and payer, and a 2000C per patient when the patient is not the subscriber (the claim
then sits under the 2000C, SBR02 is empty and PAT01 carries the relationship). Groups keep the order
in which their first claim comes, claims their input order: the same claims give the same bytes.

What the writer refuses (:class:`X12WriteError`) is what it cannot write at all: no lines, more than
12 diagnoses or 4 modifiers/pointers, a subscriber without a member id, an identifier longer than its
element. Whether a claim should be billed is the scrubber's business, not the writer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mappings.billing.model import (
    Address,
    ControlNumbers,
    Party,
    Payer,
    Person,
    ProfessionalClaim,
    ServiceLine,
    Submitter,
)
from mappings.x12.envelope import (
    X12WriteError,
    amount,
    ccyymmdd,
    digits,
    hhmm,
    ident,
    interchange,
    quantity,
    render,
    text,
)

VERSION = "005010X222A1"


def write_837p(
    claims: Sequence[ProfessionalClaim],
    submitter: Submitter,
    control: ControlNumbers,
    *,
    created: datetime,
    newline: bool = False,
    ack_requested: bool = False,
) -> str:
    """The whole 837P file for ``claims`` (one submitter; any number of billing providers and payers)."""
    if not claims:
        raise X12WriteError("no claims to write", loop="2300", rule="837p.no-claims")
    body = _Body()
    body.header(submitter, control, created)
    for provider, subscribers in _hierarchy(claims):
        body.billing_provider(provider, subscribers)
    return interchange([body.segments], transaction_id="837", functional_id="HC", version=VERSION,
                       submitter=submitter, control=control, created=created, newline=newline,
                       ack_requested=ack_requested)


#: a 2000B: (subscriber, payer, responsibility, group, patient is subscriber) -> its claims by patient
_SubscriberKey = tuple[Person, Payer, str, str | None, bool]
_PatientKey = tuple[Person | None, str]


def _hierarchy(
    claims: Sequence[ProfessionalClaim],
) -> list[tuple[Party, list[tuple[_SubscriberKey, list[tuple[_PatientKey, list[ProfessionalClaim]]]]]]]:
    providers: dict[Party, dict[_SubscriberKey, dict[_PatientKey, list[ProfessionalClaim]]]] = {}
    for claim in claims:
        dependent = claim.patient is not None and claim.patient != claim.subscriber
        key: _SubscriberKey = (claim.subscriber, claim.payer, claim.payer_responsibility, claim.group_number,
                               not dependent)
        patient: _PatientKey = (claim.patient if dependent else None, claim.relationship if dependent else "18")
        providers.setdefault(claim.billing_provider, {}).setdefault(key, {}).setdefault(patient, []).append(claim)
    return [
        (provider, [(key, list(patients.items())) for key, patients in subscribers.items()])
        for provider, subscribers in providers.items()
    ]


class _Body:
    def __init__(self) -> None:
        self.segments: list[str] = []
        self.hl = 0

    def add(self, segment_id: str, *elements: str | tuple[str, ...] | None) -> None:
        self.segments.append(render(segment_id, *elements))

    def next_hl(self, parent: int | None, level: str, has_children: bool) -> int:
        self.hl += 1
        self.add("HL", str(self.hl), str(parent) if parent else None, level, "1" if has_children else "0")
        return self.hl

    def header(self, submitter: Submitter, control: ControlNumbers, created: datetime) -> None:
        reference = f"{control.interchange:09d}"
        self.add("BHT", "0019", "00", reference, ccyymmdd(created), hhmm(created), "CH")
        self.add("NM1", "41", "2", text(submitter.name, 60), None, None, None, None, "46",
                 ident(submitter.etin, 80, loop="1000A", element="NM109"))
        phone = digits(submitter.contact_phone)
        email = text(submitter.contact_email, 256) if submitter.contact_email else ""
        if not phone and not email:
            raise X12WriteError("the submitter contact needs a phone or an e-mail", loop="1000A", element="PER",
                                rule="837p.submitter-contact")
        contacts: list[str | None] = []
        if phone:
            contacts += ["TE", phone[:256]]
        if email:
            contacts += ["EM", email]
        self.add("PER", "IC", text(submitter.contact_name, 60), *contacts)
        self.add("NM1", "40", "2", text(submitter.receiver_name, 60), None, None, None, None, "46",
                 ident(submitter.receiver_id, 80, loop="1000B", element="NM109"))

    def billing_provider(
        self, provider: Party,
        subscribers: list[tuple[_SubscriberKey, list[tuple[_PatientKey, list[ProfessionalClaim]]]]],
    ) -> None:
        parent = self.next_hl(None, "20", True)
        if provider.taxonomy:
            self.add("PRV", "BI", "PXC", ident(provider.taxonomy, 50, loop="2000A", element="PRV03"))
        if not provider.npi:
            raise X12WriteError("the billing provider has no NPI", loop="2010AA", element="NM109",
                                rule="837p.billing-npi")
        self.name("85", provider, "2010AA")
        if provider.address is None:
            raise X12WriteError("the billing provider has no address", loop="2010AA", element="N3",
                                rule="837p.billing-address")
        self.address(provider.address)
        tax_id = digits(provider.tax_id)
        if not tax_id:
            raise X12WriteError("the billing provider has no EIN", loop="2010AA", element="REF02",
                                rule="837p.billing-tax-id")
        self.add("REF", "EI", tax_id)
        for key, patients in subscribers:
            self.subscriber(parent, key, patients)

    def subscriber(self, parent: int, key: _SubscriberKey,
                   patients: list[tuple[_PatientKey, list[ProfessionalClaim]]]) -> None:
        person, payer, responsibility, group, is_patient = key
        hl = self.next_hl(parent, "22", not is_patient)
        self.add("SBR", responsibility, "18" if is_patient else None,
                 ident(group, 50, loop="2000B", element="SBR03") or None, None, None, None, None, None,
                 payer.filing_indicator)
        if not person.member_id:
            raise X12WriteError("the subscriber has no member id", loop="2010BA", element="NM109",
                                rule="837p.member-id")
        self.person("IL", person, "2010BA", member_id=person.member_id)
        self.add("NM1", "PR", "2", text(payer.name, 60), None, None, None, None, "PI",
                 ident(payer.payer_id, 80, loop="2010BB", element="NM109"))
        if payer.address is not None:
            self.address(payer.address)
        for (patient, relationship), claims in patients:
            if patient is None:
                for claim in claims:
                    self.claim(claim)
                continue
            self.next_hl(hl, "23", False)
            self.add("PAT", ident(relationship, 2, loop="2000C", element="PAT01"))
            self.person("QC", patient, "2010CA", member_id=None)
            for claim in claims:
                self.claim(claim)

    def name(self, entity: str, party: Party, loop: str) -> None:
        person = party.first_name is not None
        self.add("NM1", entity, "1" if person else "2", _required(party.last_or_org_name, 60, loop, "NM103"),
                 text(party.first_name, 35) if person else None, text(party.middle_name, 25) if person else None,
                 None, None, "XX" if party.npi else None, ident(party.npi, 80, loop=loop, element="NM109"))

    def person(self, entity: str, person: Person, loop: str, *, member_id: str | None) -> None:
        self.add("NM1", entity, "1", _required(person.last_name, 60, loop, "NM103"),
                 _required(person.first_name, 35, loop, "NM104"),
                 text(person.middle_name, 25), None, None, "MI" if member_id else None,
                 ident(member_id, 80, loop=loop, element="NM109"))
        self.address(person.address)
        self.add("DMG", "D8", ccyymmdd(person.birth_date), person.gender)

    def address(self, address: Address) -> None:
        self.add("N3", _required(address.line1, 55, "N3", "N301"), text(address.line2, 55) or None)
        self.add("N4", _required(address.city, 30, "N4", "N401"), _required(address.state, 2, "N4", "N402"),
                 digits(address.postal_code)[:15])


    def claim(self, claim: ProfessionalClaim) -> None:
        loop = "2300"
        if not claim.lines:
            raise X12WriteError("a claim needs at least one service line", loop=loop, rule="837p.no-lines")
        if not 1 <= len(claim.diagnoses) <= 12:
            raise X12WriteError("a claim carries 1 to 12 diagnoses", loop=loop, element="HI", rule="837p.hi-count")
        self.add("CLM", ident(claim.patient_control_number, 38, loop=loop, element="CLM01"),
                 amount(claim.total_charge), None, None,
                 (ident(claim.place_of_service, 2, loop=loop, element="CLM05-1"), "B", claim.frequency_code),
                 "Y", "A", "Y", "Y")
        if claim.onset_date is not None:
            self.add("DTP", "431", "D8", ccyymmdd(claim.onset_date))
        if claim.initial_treatment_date is not None:
            self.add("DTP", "454", "D8", ccyymmdd(claim.initial_treatment_date))
        if claim.prior_authorization:
            self.add("REF", "G1", ident(claim.prior_authorization, 50, loop=loop, element="REF02"))
        if claim.frequency_code in ("7", "8"):
            if not claim.original_reference:
                raise X12WriteError("a replacement or void needs the payer's claim number", loop=loop,
                                    element="REF*F8", rule="837p.original-reference")
            self.add("REF", "F8", ident(claim.original_reference, 50, loop=loop, element="REF02"))
        codes = [ident(code.replace(".", ""), 30, loop=loop, element="HI") for code in claim.diagnoses]
        self.add("HI", ("ABK", codes[0]), *(("ABF", code) for code in codes[1:]))
        if claim.referring_provider is not None:
            self.name("DN", claim.referring_provider, "2310A")
        if claim.rendering_provider is not None:
            self.rendering(claim.rendering_provider, "2310B")
        for line in claim.lines:
            self.line(claim, line)

    def rendering(self, party: Party, loop: str) -> None:
        self.name("82", party, loop)
        if party.taxonomy:
            self.add("PRV", "PE", "PXC", ident(party.taxonomy, 50, loop=loop, element="PRV03"))

    def line(self, claim: ProfessionalClaim, line: ServiceLine) -> None:
        loop = "2400"
        if len(line.modifiers) > 4 or len(line.diagnosis_pointers) > 4:
            raise X12WriteError("at most four modifiers and four diagnosis pointers", loop=loop, element="SV1",
                                rule="837p.sv1-composite")
        if any(not 1 <= pointer <= len(claim.diagnoses) for pointer in line.diagnosis_pointers):
            raise X12WriteError("a diagnosis pointer points past the claim's diagnoses", loop=loop,
                                element="SV107", rule="837p.diagnosis-pointer")
        self.add("LX", str(line.line_number))
        procedure = ("HC", ident(line.code, 48, loop=loop, element="SV101-2"),
                     *(ident(modifier, 2, loop=loop, element="SV101-3") for modifier in line.modifiers))
        pos = line.place_of_service if line.place_of_service not in (None, claim.place_of_service) else None
        self.add("SV1", procedure, amount(line.charge), "UN", quantity(line.units),
                 ident(pos, 2, loop=loop, element="SV105") or None, None,
                 tuple(str(pointer) for pointer in line.diagnosis_pointers) or ("1",))
        self.add("DTP", "472", "D8", ccyymmdd(line.service_date))
        self.add("REF", "6R", ident(line.control_number, 50, loop=loop, element="REF02"))
        if line.rendering is not None and line.rendering != claim.rendering_provider:
            self.rendering(line.rendering, "2420A")


def _required(value: str, max_length: int, loop: str, element: str) -> str:
    out = text(value, max_length)
    if not out:
        raise X12WriteError("empty once cleaned of characters X12 does not carry", loop=loop, element=element,
                            rule="837p.required")
    return out

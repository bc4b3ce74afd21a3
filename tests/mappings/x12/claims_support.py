"""A realistic week of therapy claims and a submitter, for every test of billing files to reuse."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

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

CLINIC_ADDRESS = Address(line1="100 Main Street", line2="Suite 2", city="Springfield", state="IL",
                         postal_code="627011234")
CLINIC = Party(last_or_org_name="Riverside Rehab Clinic", npi="1234567893", tax_id="12-3456789",
               taxonomy="261QR0400X", address=CLINIC_ADDRESS, phone="2175550100")
EAST_CLINIC = Party(last_or_org_name="Riverside Rehab East", npi="1245319599", tax_id="98-7654321",
                    taxonomy="261QR0400X",
                    address=Address(line1="9 Oak Avenue", city="Springfield", state="IL", postal_code="627029876"))
PT = Party(last_or_org_name="Nguyen", first_name="Anna", npi="1356478921", taxonomy="225100000X")
PTA = Party(last_or_org_name="Okafor", first_name="Ben", npi="1467589032", taxonomy="225200000X")
OT = Party(last_or_org_name="Lopez", first_name="Maria", npi="1578690143", taxonomy="225X00000X")
SLP = Party(last_or_org_name="Schmidt", first_name="Karl", npi="1689701254", taxonomy="235Z00000X")
REFERRER = Party(last_or_org_name="Patel", first_name="Ravi", npi="1790812365")
MEDICARE = Payer(name="Medicare Part B", payer_id="00952", filing_indicator="MB")
ACME = Payer(name="Acme Health Plan", payer_id="ACME1", filing_indicator="CI",
             address=Address(line1="PO Box 500", city="Chicago", state="IL", postal_code="60601"))


def _home(line1: str) -> Address:
    return Address(line1=line1, city="Springfield", state="IL", postal_code="62704")


JONES = Person(last_name="Jones", first_name="Robert", middle_name="A", member_id="1EG4TE5MK73",
               birth_date=date(1950, 3, 14), gender="M", address=_home("12 Elm Street"))
GARCIA = Person(last_name="Garcia", first_name="Elena", member_id="2AB3CD4EF55", birth_date=date(1948, 11, 2),
                gender="F", address=_home("44 Pine Road"))
SMITH = Person(last_name="Smith", first_name="Laura", member_id="ACM123456701", birth_date=date(1980, 6, 1),
               gender="F", address=_home("7 Birch Lane"))
SMITH_CHILD = Person(last_name="Smith", first_name="Tommy", birth_date=date(2015, 9, 20), gender="M",
                     address=_home("7 Birch Lane"))
BROWN = Person(last_name="Brown", first_name="Walter", member_id="3GH5JK6LM77", birth_date=date(1945, 1, 30),
               gender="M", address=_home("3 Cedar Court"))

MONDAY, TUESDAY, WEDNESDAY, THURSDAY = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)


def _line(number: int, code: str, modifiers: tuple[str, ...], charge: str, units: str, day: date, *,
          minutes: int | None = None, pointers: tuple[int, ...] = (1,), rendering: Party | None = None,
          assistant: bool = False, pcn: str) -> ServiceLine:
    return ServiceLine(line_number=number, control_number=f"{pcn}-{number}", code=code, modifiers=modifiers,
                       charge=Decimal(charge), units=Decimal(units), minutes=minutes, service_date=day,
                       diagnosis_pointers=pointers, rendering=rendering, rendering_is_assistant=assistant)


def pt_evaluation() -> ProfessionalClaim:
    """PT evaluation (97161 untimed) and timed treatment (97110, 97140, 97530) with GP."""
    pcn = "TH2026030201"
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=CLINIC, rendering_provider=PT, referring_provider=REFERRER,
        subscriber=JONES, payer=MEDICARE, diagnoses=("M5450", "M6281"), onset_date=date(2026, 2, 10),
        initial_treatment_date=MONDAY, discipline="PT",
        lines=(
            _line(1, "97161", ("GP",), "150.00", "1", MONDAY, pointers=(1, 2), pcn=pcn),
            _line(2, "97110", ("GP",), "75.50", "2", MONDAY, minutes=25, pointers=(1, 2), pcn=pcn),
            _line(3, "97140", ("GP", "59"), "40.00", "1", MONDAY, minutes=10, pcn=pcn),
            _line(4, "97530", ("GP",), "45.25", "1", MONDAY, minutes=12, pointers=(2,), pcn=pcn),
        ),
    )


def pt_with_assistant() -> ProfessionalClaim:
    """PT follow-up where the assistant renders one line (CQ) in 2420A."""
    pcn = "TH2026030402"
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=CLINIC, rendering_provider=PT, referring_provider=REFERRER,
        subscriber=JONES, payer=MEDICARE, diagnoses=("M5450",), prior_authorization="PA778899",
        discipline="PT",
        lines=(
            _line(1, "97110", ("GP",), "75.50", "2", WEDNESDAY, minutes=30, pcn=pcn),
            _line(2, "97530", ("GP", "CQ"), "45.25", "1", WEDNESDAY, minutes=15, rendering=PTA, assistant=True,
                  pcn=pcn),
        ),
    )


def ot_evaluation() -> ProfessionalClaim:
    pcn = "TH2026030303"
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=CLINIC, rendering_provider=OT, subscriber=GARCIA,
        payer=MEDICARE, diagnoses=("M19011", "S42201D"), discipline="OT",
        lines=(
            _line(1, "97165", ("GO",), "160.00", "1", TUESDAY, pointers=(1, 2), pcn=pcn),
            _line(2, "97535", ("GO",), "60.00", "2", TUESDAY, minutes=28, pcn=pcn),
        ),
    )


def slp_for_dependent() -> ProfessionalClaim:
    """SLP 92507 GN for a child insured under a parent's commercial plan (2000C)."""
    pcn = "TH2026030504"
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=EAST_CLINIC, rendering_provider=SLP, subscriber=SMITH,
        patient=SMITH_CHILD, relationship="19", payer=ACME, group_number="GRP-7788", diagnoses=("F8081",),
        discipline="SLP", place_of_service="11",
        lines=(_line(1, "92507", ("GN",), "120.00", "1", THURSDAY, pcn=pcn),),
    )


def replacement() -> ProfessionalClaim:
    """A corrected claim (frequency 7) pointing at the payer's original claim number."""
    pcn = "TH2026022705"
    return ProfessionalClaim(
        patient_control_number=pcn, billing_provider=EAST_CLINIC, rendering_provider=PT, subscriber=BROWN,
        payer=MEDICARE, frequency_code="7", original_reference="22026058123400", diagnoses=("M25561", "M6281"),
        discipline="PT",
        lines=(
            _line(1, "97110", ("GP", "KX"), "75.50", "3", date(2026, 2, 27), minutes=40, pointers=(1, 2), pcn=pcn),
            ServiceLine(line_number=2, control_number=f"{pcn}-2", code="97116", modifiers=("GP",),
                        charge=Decimal("38.00"), units=Decimal("1"), minutes=9, service_date=date(2026, 2, 27),
                        place_of_service="22", diagnosis_pointers=(1,)),
        ),
    )


def week_of_claims() -> list[ProfessionalClaim]:
    """Five claims of one week: two billing providers, Medicare and a commercial plan, a dependent, a replacement."""
    return [pt_evaluation(), ot_evaluation(), slp_for_dependent(), pt_with_assistant(), replacement()]


def submitter() -> Submitter:
    return Submitter(name="Riverside Rehab Billing", etin="RRB000123", contact_name="Billing Office",
                     contact_phone="(217) 555-0100", contact_email="billing@riverside.example",
                     receiver_name="Claims Clearinghouse", receiver_id="CLEARHOUSE01", usage="T")


def control(number: int = 42) -> ControlNumbers:
    return ControlNumbers(interchange=number, group=number, transaction=number)

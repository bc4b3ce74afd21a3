"""The 835 as plain typed values: what :mod:`mappings.x12.read835` reads and the FHIR mapping uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from mappings.x12.carc import carc_description, group_description, plb_description, rarc_description
from mappings.x12.reader import X12Error

#: CLP02 claim status codes
CLAIM_STATUS: dict[str, str] = {
    "1": "Processed as primary",
    "2": "Processed as secondary",
    "3": "Processed as tertiary",
    "4": "Denied",
    "19": "Processed as primary, forwarded to additional payer(s)",
    "20": "Processed as secondary, forwarded to additional payer(s)",
    "21": "Processed as tertiary, forwarded to additional payer(s)",
    "22": "Reversal of previous payment",
    "23": "Not our claim, forwarded to additional payer(s)",
    "25": "Predetermination pricing only, no payment",
}
#: BPR04 payment method
PAYMENT_METHODS: dict[str, str] = {
    "CHK": "Check",
    "ACH": "Automated clearing house (EFT)",
    "NON": "Non-payment data",
    "BOP": "Financial institution option",
    "FWT": "Federal reserve funds/wire transfer",
}
ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One reason/amount/quantity of a CAS segment."""

    group: str  # CAS01: CO, PR, OA, PI, CR
    reason: str  # CARC
    amount: Decimal
    quantity: Decimal | None = None

    @property
    def group_description(self) -> str | None:
        return group_description(self.group)

    @property
    def reason_description(self) -> str | None:
        return carc_description(self.reason)


@dataclass(frozen=True, slots=True)
class Remark:
    code: str  # RARC (LQ*HE, MOA, MIA) or NCPDP reject code (LQ*RX)
    qualifier: str = "HE"

    @property
    def description(self) -> str | None:
        return rarc_description(self.code) if self.qualifier == "HE" else None


@dataclass(frozen=True, slots=True)
class Procedure:
    """A composite procedure (SVC01, SVC06): qualifier (HC, AD, ER, IV, N4, NU...), code, modifiers."""

    qualifier: str
    code: str
    modifiers: tuple[str, ...] = ()
    description: str | None = None


@dataclass(slots=True)
class Party:
    """A payer, payee or person named in the 835 (N1 or NM1 and what follows it)."""

    entity: str  # N101 / NM101: PR, PE, QC, IL, 82, 74, TT, PR...
    name: str = ""
    first_name: str | None = None
    middle_name: str | None = None
    id_qualifier: str | None = None  # N103 / NM108: XX (NPI), FI (TIN), MI, PI, XV...
    identifier: str | None = None
    address_lines: tuple[str, ...] = ()
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    references: list[tuple[str, str]] = field(default_factory=list)  # (REF01, REF02): 2U, TJ, EO...
    contacts: list[tuple[str, str, str]] = field(default_factory=list)  # (PER01 function, name, first number)


@dataclass(slots=True)
class ServicePayment:
    """2110: one service line paid (SVC) and what came with it."""

    procedure: Procedure
    charge: Decimal
    paid: Decimal
    position: int
    revenue_code: str | None = None
    units: Decimal | None = None
    original_procedure: Procedure | None = None  # SVC06: the code billed when the payer paid another
    original_units: Decimal | None = None
    dates: dict[str, date] = field(default_factory=dict)  # DTM01: 472 service, 150 start, 151 end
    adjustments: list[Adjustment] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    amounts: dict[str, Decimal] = field(default_factory=dict)  # AMT01: B6 allowed, KH late filing...
    quantities: dict[str, Decimal] = field(default_factory=dict)
    remarks: list[Remark] = field(default_factory=list)

    @property
    def line_control_number(self) -> str | None:
        return next((value for qualifier, value in self.references if qualifier == "6R"), None)

    @property
    def allowed(self) -> Decimal | None:
        return self.amounts.get("B6")


@dataclass(slots=True)
class ClaimPayment:
    """2100: one claim paid, denied or reversed (CLP) with its adjustments and service lines."""

    patient_control_number: str  # CLP01: the hub's claim number (837P CLM01)
    status_code: str  # CLP02
    charge: Decimal  # CLP03
    paid: Decimal  # CLP04
    position: int
    patient_responsibility: Decimal | None = None  # CLP05
    filing_indicator: str | None = None  # CLP06: MB, MC, CI, 12...
    payer_claim_control_number: str | None = None  # CLP07
    facility_type: str | None = None  # CLP08: place of service for professional claims
    frequency: str | None = None  # CLP09: 1 original, 7 replacement, 8 void
    header_number: str | None = None  # LX01 of the header it is listed under
    adjustments: list[Adjustment] = field(default_factory=list)
    patient: Party | None = None  # NM1*QC
    insured: Party | None = None  # NM1*IL
    corrected_patient: Party | None = None  # NM1*74
    rendering: Party | None = None  # NM1*82
    crossover: Party | None = None  # NM1*TT
    corrected_payer: Party | None = None  # NM1*PR
    references: list[tuple[str, str]] = field(default_factory=list)  # REF*EA, 1K, 1L, F8, G1...
    dates: dict[str, date] = field(default_factory=dict)  # DTM01: 232/233 statement, 050 received, 036...
    contacts: list[tuple[str, str, str]] = field(default_factory=list)
    amounts: dict[str, Decimal] = field(default_factory=dict)  # AMT01: AU coverage, DY, F5 patient paid...
    quantities: dict[str, Decimal] = field(default_factory=dict)
    remarks: list[Remark] = field(default_factory=list)  # MOA / MIA remark codes
    services: list[ServicePayment] = field(default_factory=list)

    @property
    def status_description(self) -> str | None:
        return CLAIM_STATUS.get(self.status_code)

    @property
    def is_reversal(self) -> bool:
        return self.status_code == "22"

    @property
    def is_denied(self) -> bool:
        return self.status_code == "4"


@dataclass(frozen=True, slots=True)
class ProviderAdjustment:
    """One reason/amount pair of a PLB segment (positive amounts reduce the payment)."""

    provider_id: str  # PLB01
    fiscal_period_date: date | None  # PLB02
    reason: str  # PLB03-1
    reference: str | None  # PLB03-2: the claim or the letter the adjustment is about
    amount: Decimal
    position: int

    @property
    def description(self) -> str | None:
        return plb_description(self.reason)


@dataclass(slots=True)
class Remittance:
    """One 835 transaction set: one payment (or non-payment) to one payee."""

    control_number: str  # ST02
    handling_code: str = ""  # BPR01: I remittance + payment, H notification only, X...
    total_paid: Decimal = ZERO  # BPR02
    credit_debit: str = ""  # BPR03: C credit, D debit
    payment_method: str = ""  # BPR04
    payment_format: str | None = None  # BPR05: CCP, CTX
    payment_date: date | None = None  # BPR16
    trace_number: str = ""  # TRN02: check or EFT number
    trace_payer_id: str | None = None  # TRN03: 1 + payer's TIN, or another payer id
    trace_originating_company: str | None = None  # TRN04
    receiver_id: str | None = None  # REF*EV
    version_id: str | None = None  # REF*F2
    production_date: date | None = None  # DTM*405
    currency: str | None = None  # CUR02
    payment_position: int = 0  # position of BPR in the file
    payer: Party = field(default_factory=lambda: Party("PR"))
    payee: Party = field(default_factory=lambda: Party("PE"))
    headers: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # LX01 with its TS3 elements
    claims: list[ClaimPayment] = field(default_factory=list)
    provider_adjustments: list[ProviderAdjustment] = field(default_factory=list)
    errors: list[X12Error] = field(default_factory=list)  # the set's envelope errors, then segments not read
    warnings: list[X12Error] = field(default_factory=list)  # sums that do not balance

    @property
    def payer_id(self) -> str:
        """The payer's id as the 835 gives it: REF*2U of 1000A, else N104, else TRN03."""
        ref = next((value for qualifier, value in self.payer.references if qualifier == "2U"), None)
        return ref or self.payer.identifier or self.trace_payer_id or ""

    @property
    def payment_method_description(self) -> str | None:
        return PAYMENT_METHODS.get(self.payment_method)


@dataclass(slots=True)
class RemittanceFile:
    remittances: list[Remittance]
    errors: list[X12Error]  # every problem: envelopes, transaction sets and segments

    @property
    def ok(self) -> bool:
        return not self.errors

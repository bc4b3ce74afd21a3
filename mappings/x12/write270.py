"""The 270 eligibility inquiry, ASC X12 005010X279A1, written from :class:`EligibilityInquiry`\\ s.

One file = one interchange, one group (GS01 ``HS``), one transaction set. The HL hierarchy: one
2000A information source per payer, under it one 2000B information receiver per provider, under it
one 2000C subscriber per inquiry, and a 2000D dependent when the patient is not the subscriber. The
trace number (TRN*1) and the questions (DTP*291, EQ) go to the level of the patient: the subscriber,
or the dependent. Groups keep the order of their first inquiry: the same inquiries give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mappings.billing.model import ControlNumbers, Party, Person, Submitter
from mappings.x12.eligibility import EligibilityInquiry, InquiryPayer
from mappings.x12.envelope import X12WriteError, ccyymmdd, clean, digits, hhmm, ident, interchange, render, text

VERSION = "005010X279A1"


def write_270(
    inquiries: Sequence[EligibilityInquiry],
    submitter: Submitter,
    control: ControlNumbers,
    *,
    created: datetime,
    newline: bool = False,
    ack_requested: bool = False,
) -> str:
    """The whole 270 file for ``inquiries`` (any number of payers and providers)."""
    if not inquiries:
        raise X12WriteError("no inquiries to write", loop="2000C", rule="270.no-inquiries")
    tree: dict[InquiryPayer, dict[Party, list[EligibilityInquiry]]] = {}
    for inquiry in inquiries:
        tree.setdefault(inquiry.payer, {}).setdefault(inquiry.provider, []).append(inquiry)
    segments = [render("BHT", "0022", "13", f"{control.interchange:09d}", ccyymmdd(created), hhmm(created))]
    hl = 0

    def add_hl(parent: int | None, level: str, has_children: bool) -> int:
        nonlocal hl
        hl += 1
        segments.append(render("HL", str(hl), str(parent) if parent else None, level, "1" if has_children else "0"))
        return hl

    for payer, providers in tree.items():
        source = add_hl(None, "20", True)
        segments.append(render("NM1", "PR", "2", text(payer.name, 60), None, None, None, None, "PI",
                               ident(payer.payer_id, 80, loop="2100A", element="NM109")))
        for provider, asked in providers.items():
            receiver = add_hl(source, "21", True)
            segments.append(_provider_name(provider))
            for inquiry in asked:
                subscriber = add_hl(receiver, "22", inquiry.patient is not None)
                if inquiry.patient is None:
                    segments.append(_trace(inquiry, submitter))
                segments.extend(_member("IL", inquiry.subscriber, inquiry, asks=inquiry.patient is None))
                if inquiry.patient is not None:
                    add_hl(subscriber, "23", False)
                    segments.append(_trace(inquiry, submitter))
                    segments.extend(_member("03", inquiry.patient, inquiry, asks=True))
    return interchange([segments], transaction_id="270", functional_id="HS", version=VERSION,
                       submitter=submitter, control=control, created=created, newline=newline,
                       ack_requested=ack_requested)


def _provider_name(provider: Party) -> str:
    if not provider.npi:
        raise X12WriteError("the information receiver has no NPI", loop="2100B", element="NM109",
                            rule="270.provider-npi")
    person = provider.first_name is not None
    return render("NM1", "1P", "1" if person else "2", text(provider.last_or_org_name, 60),
                  text(provider.first_name, 35) if person else None, text(provider.middle_name, 25) if person else None,
                  None, None, "XX", ident(provider.npi, 80, loop="2100B", element="NM109"))


def _trace(inquiry: EligibilityInquiry, submitter: Submitter) -> str:
    """TRN*1: the trace number and who assigned it (TRN03: ``1`` + EIN, else ``9`` + the submitter id)."""
    ein = digits(inquiry.provider.tax_id)
    if len(ein) == 9:
        originator = "1" + ein
    else:
        originator = "9" + "".join(ch for ch in clean(submitter.etin) if ch.isalnum())[:9].rjust(9, "0")
    return render("TRN", "1", ident(inquiry.trace, 50, loop="2000C", element="TRN02"), originator)


def _member(entity: str, person: Person, inquiry: EligibilityInquiry, *, asks: bool) -> list[str]:
    loop = "2100C" if entity == "IL" else "2100D"
    member_id = person.member_id if entity == "IL" else None
    if entity == "IL" and not member_id:
        raise X12WriteError("the subscriber has no member id", loop=loop, element="NM109", rule="270.member-id")
    out = [render("NM1", entity, "1", text(person.last_name, 60), text(person.first_name, 35),
                  text(person.middle_name, 25), None, None, "MI" if member_id else None,
                  ident(member_id, 80, loop=loop, element="NM109"))]
    if entity == "IL" and inquiry.group_number:
        out.append(render("REF", "6P", ident(inquiry.group_number, 50, loop=loop, element="REF02")))
    out.append(render("DMG", "D8", ccyymmdd(person.birth_date), person.gender))
    if entity == "03":
        out.append(render("INS", "N", ident(inquiry.relationship, 2, loop=loop, element="INS02")))
    if asks:
        out.append(render("DTP", "291", "D8", ccyymmdd(inquiry.on)))
        for code in inquiry.service_types:
            out.append(render("EQ", ident(code, 2, loop="2110C" if entity == "IL" else "2110D", element="EQ01")))
    return out

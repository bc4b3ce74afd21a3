"""Round trips FHIR -> HL7 v2 -> FHIR (hypothesis): every mapped field comes back as it was.

* a referral Bundle (``build_referral_bundle``) -> REF^I12 -> the inbound mapping -> the same Bundle;
* a referral Task -> RRI^I12 / OSU^O51 -> ``read_status_update`` -> the same status, business
  status, reason and referral identifier;
* escape/unescape of any text with any delimiters; ACKs in original and enhanced mode.
"""

from __future__ import annotations

import base64
import string
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.hl7v2 import (
    Hl7Error,
    OutboundHeader,
    Separators,
    accept_ack_wanted,
    application_ack_wanted,
    build_ack,
    escape,
    is_enhanced,
    parse,
    read_ack,
    read_header,
    read_status_update,
    referral_to_ref_i12,
    tables,
    task_to_osu_o51,
    task_to_rri_i12,
    translate,
    unescape,
)
from mappings.hl7v2.errors import ErrorLocation
from mappings.referral.intake import (
    AttachmentIn,
    CoverageIn,
    IdentifierIn,
    PatientIn,
    ReasonIn,
    ReferralIn,
    ReferrerIn,
    build_referral_bundle,
)
from mappings.referral.task_state import apply_transition, referral_task
from mappings.referral.task_statuses import BusinessStatus

CLINIC = "Organization/clinic-1"
HEADER = OutboundHeader(
    sending_application="HUB",
    sending_facility="REHAB",
    receiving_application="EMR",
    receiving_facility="ORTHO",
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------ strategies

# any printable text (delimiters, escape characters, accents, CJK, emoji), no control characters
_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85\xa0\u1680")
text = st.text(_chars, min_size=1, max_size=24).map(str.strip).filter(bool)
token = st.text(_chars.filter(lambda c: not c.isspace()), min_size=1, max_size=12)
note = st.lists(text, min_size=1, max_size=3).map("\n".join)
systems = st.one_of(
    st.sampled_from(
        [
            "urn:oid:2.16.840.1.113883.3.72",
            "https://ids.example.org/mrn",
            "urn:ietf:rfc:3986",
            "http://hl7.org/fhir/sid/us-npi",
            tables.NAMESPACE_SYSTEM_BASE + "ORTHO",
        ]
    ),
    st.from_regex(r"https://[a-z]{3,8}\.example/[a-z0-9]{1,8}", fullmatch=True),
)
icd10 = st.from_regex(r"[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?", fullmatch=True)
payer_ids = st.from_regex(r"[A-Z]{2,6}[0-9]{0,3}", fullmatch=True).filter(
    lambda v: v not in tables.INSURER_IN
)
mime = st.sampled_from(
    ["application/pdf", "image/png", "image/jpeg", "text/plain", "image/gif", "application/xml"]
)


@st.composite
def referrals(draw: st.DrawFn) -> ReferralIn:
    patient = PatientIn(
        identifier=IdentifierIn(system=draw(systems), value=draw(text)),
        family=draw(text),
        given=draw(
            st.one_of(st.just([]), st.tuples(text, st.lists(token, max_size=2)).map(lambda t: [t[0], *t[1]]))
        ),
        birth_date=draw(
            st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2024, 1, 1).date())
        ),
        gender=draw(st.sampled_from(["male", "female", "other", "unknown"])),
        phone=draw(st.none() | text),
    )
    referrer = ReferrerIn(
        npi=draw(st.from_regex(r"[0-9]{10}", fullmatch=True)),
        family=draw(text),
        given=draw(
            st.one_of(st.just([]), st.tuples(text, st.lists(token, max_size=1)).map(lambda t: [t[0], *t[1]]))
        ),
        organization=draw(st.none() | text),
        direct_address=draw(st.none() | st.emails()),
        fax=draw(st.none() | text),
    )
    coverage = draw(
        st.none() | st.builds(CoverageIn, payer=text, member_id=text, payer_id=st.none() | payer_ids)
    )
    attachments = draw(
        st.lists(
            st.builds(
                AttachmentIn,
                title=text,
                content_type=mime,
                data=st.binary(min_size=1, max_size=64).map(lambda b: base64.b64encode(b).decode()),
            ),
            max_size=2,
        )
    )
    return ReferralIn(
        identifier=IdentifierIn(system=draw(systems), value=draw(text)),
        discipline=draw(st.sampled_from(["PT", "OT", "SLP"])),
        patient=patient,
        referrer=referrer,
        reason=ReasonIn(icd10=draw(icd10), display=draw(text)),
        coverage=coverage,
        priority=draw(st.sampled_from(["routine", "urgent", "asap", "stat"])),
        note=draw(st.none() | note),
        attachments=attachments,
    )


moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


# ------------------------------------------------------------------------------------- referrals


@FAST
@given(referral=referrals(), now=moments)
def test_referral_round_trip_keeps_every_mapped_field(referral: ReferralIn, now: datetime) -> None:
    original = build_referral_bundle(referral, clinic_ref=CLINIC, now=now)
    message = referral_to_ref_i12(original, header=HEADER, control_id="CTL1", now=now)
    assert "\n" not in message  # segments end in CR only; LF in data is escaped
    back = translate(message.encode("utf-8"), clinic_ref=CLINIC, now=datetime(1999, 1, 1)).bundle
    assert back == original


def test_referral_round_trip_with_every_field(tmp_path: Any) -> None:
    referral = ReferralIn(
        identifier=IdentifierIn(system="https://ortho.example/referrals", value="R|1^2~3\\4&5"),
        discipline="SLP",
        patient=PatientIn(
            identifier=IdentifierIn(system="urn:oid:1.2.3", value="MRN 7"),
            family="O'Brien-Łukasz",
            given=["Anne Marie", "Zoë"],
            birth_date="1950-06-30",
            gender="other",
            phone="+1 555 0100",
        ),
        referrer=ReferrerIn(
            npi="1234567893",
            family="Smith",
            given=["J"],
            organization="Ortho & Co",
            direct_address="dr@direct.example",
            fax="555-0101",
        ),
        reason=ReasonIn(icd10="R13.10", display="Dysphagia, unspecified"),
        coverage=CoverageIn(payer="Acme Health", member_id="M-1", payer_id="ACME"),
        priority="stat",
        note="Line one\nLine two | with ^ delimiters\n\nafter a blank line",
        attachments=[
            AttachmentIn(title="Letter", content_type="application/pdf", data="JVBERi0="),
            AttachmentIn(title="Image", content_type="image/gif", data="R0lGOA=="),
        ],
    )
    now = datetime(2024, 5, 1, 9, 30, 15)
    original = build_referral_bundle(referral, clinic_ref=CLINIC, now=now)
    message = referral_to_ref_i12(original, header=HEADER, control_id="CTL1", now=now)
    assert translate(message, clinic_ref=CLINIC, now=now).bundle == original


# ------------------------------------------------------------------------------------------ Tasks

_REASONED = {"rejected", "cancelled"}
_PATHS = {
    "requested": [],
    "received": ["received"],
    "accepted": ["accepted"],
    "rejected": ["rejected"],
    "in-progress": ["accepted", "in-progress"],
    "on-hold": ["accepted", "on-hold"],
    "completed": ["accepted", "in-progress", "completed"],
    "cancelled": ["accepted", "cancelled"],
}


def _task(status: str, reason: str | None, identifier: dict[str, str], now: datetime) -> dict[str, Any]:
    task = referral_task(
        "ServiceRequest/sr-1", "Patient/p-1", "PractitionerRole/r-1", CLINIC, identifier=identifier, now=now
    )
    for step in _PATHS[status]:
        task = apply_transition(
            task, step, now=now, reason=reason if step in _REASONED | {"on-hold"} else None
        )
    return task


@FAST
@given(
    status=st.sampled_from(sorted(_PATHS)),
    reason=text,
    system=systems,
    value=text,
    now=moments,
    message=st.sampled_from(["RRI", "OSU"]),
)
def test_task_round_trip(
    status: str, reason: str, system: str, value: str, now: datetime, message: str
) -> None:
    task = _task(status, reason, {"system": system, "value": value}, now)
    build = task_to_rri_i12 if message == "RRI" else task_to_osu_o51
    text_ = build(task, header=HEADER, control_id="CTL2", now=now)
    update = read_status_update(text_)
    assert (update.identifier_system, update.identifier_value) == (system, value)
    assert update.status == task["status"]
    assert update.task_id == task["id"]
    expected_business = next(c["code"] for c in task["businessStatus"]["coding"])
    assert update.business_status == expected_business
    expected_reason = (task.get("statusReason") or {}).get("text")
    assert update.reason == expected_reason
    assert update.when == now.strftime("%Y%m%d%H%M%S") + "+0000"


def test_rri_and_osu_with_context_resources() -> None:
    now = datetime(2024, 5, 2, 10, 0, 0)
    referral = ReferralIn(
        identifier=IdentifierIn(system="https://ortho.example/referrals", value="R-9"),
        discipline="PT",
        patient=PatientIn(
            identifier=IdentifierIn(system="urn:oid:1.2.3", value="MRN-9"),
            family="Doe",
            given=["Jane"],
            birth_date="1970-01-01",
            gender="female",
        ),
        referrer=ReferrerIn(npi="1234567893", family="Smith", given=["John"]),
        reason=ReasonIn(icd10="M54.5", display="Low back pain"),
    )
    bundle = build_referral_bundle(referral, clinic_ref=CLINIC, now=now)
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    sr = by_type["ServiceRequest"]
    task = referral_task(
        f"ServiceRequest/{sr['id']}",
        sr["subject"]["reference"],
        sr["requester"]["reference"],
        CLINIC,
        identifier=sr["identifier"][0],
        now=now,
    )
    task = apply_transition(
        task, "rejected", now=now, reason="Out of network", business_status=BusinessStatus.DECLINED
    )
    payload = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": task}] + [{"resource": e["resource"]} for e in bundle["entry"]],
    }
    rri = parse(task_to_rri_i12(payload, header=HEADER, control_id="C3", now=now))
    pid, rf1 = rri.first("PID"), rri.first("RF1")
    assert pid is not None and rf1 is not None
    assert pid.get(5) == "Doe" and pid.get(3) == "MRN-9" and pid.get(8) == "F"
    assert rf1.get(1) == "R" and rf1.get(3) == "91251008"
    assert [p.get(7) for p in rri.all("PRD")] == ["1234567893", ""]
    osu = parse(task_to_osu_o51(payload, header=HEADER, control_id="C4", now=now))
    orc = osu.first("ORC")
    assert orc is not None
    assert (orc.get(1), orc.get(5), orc.get(12), orc.get(16, 1, 2)) == (
        "SC",
        "CA",
        "1234567893",
        "Out of network",
    )
    # a Task alone: the patient goes by its FHIR id
    alone = parse(task_to_rri_i12(task, header=HEADER, control_id="C5", now=now))
    pid = alone.first("PID")
    assert pid is not None and (pid.get(3), pid.get(3, 1, 4), pid.get(3, 1, 5)) == (
        sr["subject"]["reference"].split("/")[1],
        "THFHIR",
        "PI",
    )


# ----------------------------------------------------------------------------------- syntax & ACK


@FAST
@given(
    value=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    delimiters=st.permutations(list("|^~\\&#$*!%"[:5] + "#")).map(lambda p: "".join(p[:5])),
    formatted=st.booleans(),
)
def test_escape_round_trip(value: str, delimiters: str, formatted: bool) -> None:
    seps = Separators(*delimiters)
    escaped = escape(value, seps, formatted=formatted)
    assert not set(escaped) & {seps.field, seps.component, seps.repetition, seps.subcomponent, "\r", "\n"}
    assert unescape(escaped, seps) == value


def test_ack_original_and_enhanced_mode() -> None:
    raw = "MSH|^~\\&|EMR|ORTHO|HUB|REHAB|20240101||REF^I12^REF_I12|ABC-1|P|2.5.1\rRF1|P\r"
    header = read_header(parse(raw))
    assert not is_enhanced(header) and application_ack_wanted(header, ok=True)
    error = Hl7Error(101, "PID-3 (patient identifier) is required", ErrorLocation("PID", 1, 3))
    ack = build_ack(header, "AE", control_id="ACK1", now=datetime(2024, 1, 1), error=error)
    parsed = parse(ack)
    assert parsed.names == ["MSH", "MSA", "ERR"]
    msh = parsed.msh
    assert (msh.get(3), msh.get(5), msh.get(6), msh.get(9), msh.get(9, 1, 2), msh.get(10)) == (
        "THERAPY_HUB",
        "EMR",
        "ORTHO",
        "ACK",
        "I12",
        "ACK1",
    )
    assert msh.get(18) == "UNICODE UTF-8"
    result = read_ack(parsed)
    assert (result.code, result.acknowledged_control_id, result.error_code, result.error_location) == (
        "AE",
        "ABC-1",
        "101",
        "PID^1^3",
    )
    assert "PID-3" in result.describe() and not result.accepted
    err = parsed.first("ERR")
    assert err is not None and (err.get(3, 1, 2), err.get(3, 1, 3), err.get(4)) == (
        "Required field missing",
        "HL70357",
        "E",
    )

    enhanced = read_header(parse(raw.replace("|2.5.1", "|2.5.1|||ER|AL")))
    assert is_enhanced(enhanced)
    assert not accept_ack_wanted(enhanced, ok=True) and accept_ack_wanted(enhanced, ok=False)
    assert application_ack_wanted(enhanced, ok=True)
    never = read_header(parse(raw.replace("|2.5.1", "|2.5.1|||NE|NE")))
    assert not accept_ack_wanted(never, ok=False) and not application_ack_wanted(never, ok=False)
    with pytest.raises(Hl7Error) as info:
        read_header(parse(raw.replace("|2.5.1", "|2.5.1|||XX")))
    assert (info.value.code, str(info.value.location)) == (103, "MSH^1^15")


def test_ack_without_a_readable_header() -> None:
    ack = build_ack(
        None,
        "AR",
        control_id="X1",
        now=datetime(2024, 1, 1),
        error=Hl7Error(100, "the message does not start with an MSH segment", ErrorLocation("MSH")),
    )
    result = read_ack(parse(ack))
    assert (result.code, result.acknowledged_control_id, result.error_code) == ("AR", "", "100")


def test_non_ascii_names_survive_a_message() -> None:
    assert set(string.ascii_letters) <= set(string.printable)  # (sanity of the strategies' alphabet)
    now = datetime(2024, 1, 1)
    referral = ReferralIn(
        identifier=IdentifierIn(system="https://x.example/r", value="🦶-1"),
        discipline="OT",
        patient=PatientIn(
            identifier=IdentifierIn(system="urn:oid:1.2", value="Ж-7"),
            family="Ñúñez 李",
            given=["Ånna"],
            birth_date="2001-02-03",
        ),
        referrer=ReferrerIn(npi="1234567893", family="Zürcher"),
        reason=ReasonIn(icd10="S42.0", display="Ä"),
    )
    original = build_referral_bundle(referral, clinic_ref=CLINIC, now=now)
    message = referral_to_ref_i12(original, header=HEADER, control_id="C", now=now).encode("utf-8")
    assert translate(message, clinic_ref=CLINIC, now=now).bundle == original

"""SIU -> FHIR Appointment: reading, and a hypothesis round trip FHIR -> SIU -> FHIR keeping every
mapped field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mappings.hl7v2 import (
    Hl7Error,
    appointment_to_siu,
    parse,
    read_appointment,
    tables,
)
from mappings.hl7v2.scheduling import V3_PARTICIPATION_TYPE
from mappings.hl7v2.structures import check_structure
from tests.mappings.scheduling_support import (
    FAST,
    HEADER,
    MRN,
    NPI,
    V2_0276,
    appointment,
    context_bundle,
    siu,
    validate,
)

# ------------------------------------------------------------------------------------ reading


def test_read_appointment_with_context_gives_identifier_references() -> None:
    _, message = siu(context_bundle(appointment()))
    back = read_appointment(message)
    validate(back)
    assert back["id"] == "appt-1" and back["status"] == "booked"
    assert back["basedOn"] == [
        {
            "reference": "ServiceRequest/sr-1",
            "type": "ServiceRequest",
            "identifier": {"system": "https://ortho.example/referrals", "value": "REF-7781"},
        }
    ]
    patient, practitioner, location = back["participant"]
    assert patient == {
        "actor": {"type": "Patient", "identifier": {"system": MRN, "value": "MRN-77"}},
        "status": "accepted",
    }
    assert practitioner["actor"] == {
        "reference": "PractitionerRole/role-1",
        "identifier": {"system": NPI, "value": "1234567893"},
    }
    assert practitioner["type"] == [{"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "PPRF"}]}]
    assert location == {
        "actor": {"reference": "Location/gym-1", "display": "Gym | East"},
        "status": "accepted",
    }


def test_read_a_partner_siu() -> None:
    raw = (
        "MSH|^~\\&|EMR|ORTHO|HUB|REHAB|20240501080000||SIU^S14|X1|P|2.5.1\r"
        "SCH|SC-9^ORTHO||||||||30|min|||||||||||||||Started\r"
        "TQ1|1||||||202405020930\r"
        "NTE|1||Untyped note\r"
        "PID|1||MRN-1^^^ORTHO^MR||Doe^Jane\r"
        "RGS|1|U\r"
        "AIP|1|U|1234567893^Smith^John^^^^^^NPI|AT\r"
    )
    back = read_appointment(raw)
    validate(back)
    assert back == {
        "resourceType": "Appointment",
        "identifier": [{"system": tables.NAMESPACE_SYSTEM_BASE + "ORTHO", "value": "SC-9"}],
        "status": "arrived",
        "start": "2024-05-02T09:30:00Z",
        "minutesDuration": 30,
        "comment": "Untyped note",
        "participant": [
            {
                "actor": {
                    "type": "Patient",
                    "identifier": {"system": tables.NAMESPACE_SYSTEM_BASE + "ORTHO", "value": "MRN-1"},
                },
                "status": "accepted",
            },
            {
                "actor": {"type": "Practitioner", "identifier": {"system": NPI, "value": "1234567893"}},
                "status": "accepted",
            },
        ],
    }
    assert read_appointment(raw.replace("|Started", "").replace("SIU^S14", "SIU^S26"))["status"] == "noshow"


def test_read_errors() -> None:
    msh = "MSH|^~\\&|EMR|ORTHO|HUB|REHAB|20240501080000||SIU^S12|X1|P|2.5.1\r"
    base = msh + "SCH|SC-9" + "|" * 24 + "{}\rRGS|1\r"  # {}: SCH-25
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Blocked"))
    assert (info.value.code, str(info.value.location)) == (103, "SCH^1^25")
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked").replace("SIU^S12", "SIU^S99"))
    assert info.value.code == 103
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked").replace("RGS|1\r", ""))
    assert info.value.code == 100
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked").replace("SCH|SC-9", "SCH|"))
    assert info.value.code == 101
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked") + "TQ1|1\r")  # TQ1 after RGS is out of place
    assert (info.value.code, str(info.value.location)) == (100, "TQ1^1")
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked").replace("\rRGS", "\rTQ1|1||||||2024-05-02\rRGS"))
    assert (info.value.code, str(info.value.location)) == (102, "TQ1^1^7^1^1")
    with pytest.raises(Hl7Error) as info:
        read_appointment(base.format("Booked").replace("\rRGS", "\rTQ1|1||||||2024\rRGS"))
    assert info.value.code == 102


# ------------------------------------------------------------------------------------ round trip

_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85\xa0\u1680")
text = st.text(_chars, min_size=1, max_size=24).map(str.strip).filter(bool)
note = st.lists(text, min_size=1, max_size=3).map("\n".join)
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,20}", fullmatch=True)
codes = st.from_regex(r"[A-Z0-9][A-Z0-9.]{0,7}", fullmatch=True)
systems = st.one_of(
    st.sampled_from(
        [
            "urn:oid:2.16.840.1.113883.3.72",
            "https://ids.example.org/appointments",
            "urn:ietf:rfc:3986",
            tables.NAMESPACE_SYSTEM_BASE + "REHAB",
        ]
    ),
    st.from_regex(r"https://[a-z]{3,8}\.example/[a-z0-9]{1,8}", fullmatch=True),
)
offsets = st.sampled_from([0, -4 * 60, -10 * 60, 5 * 60 + 30, 9 * 60 + 45])


def _instant(moment: datetime, minutes: int) -> str:
    local = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes)))
    text_ = local.strftime("%Y-%m-%dT%H:%M:%S")
    if minutes == 0:
        return text_ + "Z"
    offset = local.strftime("%z")
    return f"{text_}{offset[:3]}:{offset[3:]}"


@st.composite
def concepts(draw: st.DrawFn, systems_: list[str]) -> dict[str, Any]:
    if draw(st.booleans()) and draw(st.booleans()):
        return {"text": draw(text)}
    coding = {"system": draw(st.sampled_from(systems_)), "code": draw(codes)}
    display = draw(st.none() | text)
    if display:
        coding["display"] = display
    return {"coding": [coding]}


@st.composite
def appointments(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(
        st.sampled_from(
            ["booked", "arrived", "checked-in", "fulfilled", "cancelled", "noshow", "entered-in-error"]
        )
    )
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31))).replace(
        microsecond=0
    )
    offset = draw(offsets)
    result: dict[str, Any] = {"resourceType": "Appointment", "status": status}
    if draw(st.booleans()):
        result["id"] = draw(ids)
    if "id" not in result or draw(st.booleans()):
        result["identifier"] = [{"system": draw(systems), "value": draw(text)}]
    result["start"] = _instant(moment, offset)
    length = draw(st.integers(min_value=5, max_value=240))
    if draw(st.booleans()):
        result["end"] = _instant(moment + timedelta(minutes=length), offset)
    if draw(st.booleans()):
        result["minutesDuration"] = length
    codings = list(tables.CODING_SYSTEM_OUT)
    if draw(st.booleans()):
        result["reasonCode"] = [draw(concepts(codings))]
    if draw(st.booleans()):
        result["serviceType"] = [draw(concepts(codings))]
    if draw(st.booleans()):
        code = draw(st.sampled_from(["ROUTINE", "FOLLOWUP", "CHECKUP", "EMERGENCY", "WALKIN"]))
        result["appointmentType"] = {"coding": [{"system": V2_0276, "code": code}]}
    for key, strategy in (("description", text), ("patientInstruction", text), ("comment", note)):
        if draw(st.booleans()):
            result[key] = draw(strategy)
    if status in ("cancelled", "entered-in-error") and draw(st.booleans()):
        result["cancelationReason"] = {"text": draw(text)}
    if draw(st.booleans()):
        result["basedOn"] = [{"reference": f"ServiceRequest/{draw(ids)}"}]
    participant_status = st.sampled_from(["accepted", "declined", "tentative", "needs-action"])
    participants: list[dict[str, Any]] = []
    if draw(st.booleans()):
        participants.append({"actor": {"reference": f"Patient/{draw(ids)}"}, "status": "accepted"})
    for _ in range(draw(st.integers(0, 2))):
        person: dict[str, Any] = {}
        if draw(st.booleans()):
            coding = {
                "system": V3_PARTICIPATION_TYPE,
                "code": draw(st.sampled_from(["PPRF", "SPRF", "ATND"])),
            }
            if draw(st.booleans()):
                coding["display"] = draw(text)
            person["type"] = [{"coding": [coding]}]
        kind = draw(st.sampled_from(["Practitioner", "PractitionerRole"]))
        person["actor"] = {"reference": f"{kind}/{draw(ids)}"}
        person["status"] = draw(participant_status)
        participants.append(person)
    for _ in range(draw(st.integers(0, 2))):
        location_id = draw(ids)
        actor = {"reference": f"Location/{location_id}"}
        display = draw(st.none() | text)
        if display:
            assume(display != location_id)
            actor["display"] = display
        participants.append({"actor": actor, "status": draw(participant_status)})
    assume(participants)
    result["participant"] = participants
    return result


@FAST
@given(
    original=appointments(), now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1))
)
def test_round_trip_keeps_every_mapped_field(original: dict[str, Any], now: datetime) -> None:
    kept = copy.deepcopy(original)
    event, message = appointment_to_siu(original, header=HEADER, control_id="CTL", now=now)
    assert original == kept  # the payload is not touched
    assert "\n" not in message
    assert event == {"cancelled": "S15", "entered-in-error": "S15", "noshow": "S26"}.get(
        original["status"], "S12"
    )
    parsed = parse(message)
    check_structure("SIU_S12", parsed.names)
    back = read_appointment(parsed)
    assert back == original
    validate(back)

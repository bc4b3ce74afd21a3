"""FHIR Appointment -> SIU (S12/S13/S14/S15/S26) and back: trigger choice, segment order, field
positions, escaping, and a hypothesis round trip FHIR -> SIU -> FHIR keeping every mapped field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.appointment import Appointment
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.validation import validate_resource
from mappings.hl7v2 import (
    Hl7Error,
    OutboundHeader,
    UntranslatableResource,
    appointment_to_siu,
    parse,
    read_appointment,
    tables,
)
from mappings.hl7v2.scheduling import V3_PARTICIPATION_TYPE, siu_event
from mappings.hl7v2.structures import check_structure

HEADER = OutboundHeader(
    sending_application="HUB",
    sending_facility="REHAB",
    receiving_application="EMR",
    receiving_facility="ORTHO",
)
NOW = datetime(2024, 5, 1, 8, 0, 0)
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
NPI = "http://hl7.org/fhir/sid/us-npi"
MRN = "urn:oid:2.16.840.1.113883.3.72"


def appointment(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": "appt-1",
        "identifier": [{"system": "https://rehab.example/sid/appointment", "value": "A-1001"}],
        "status": "booked",
        "serviceType": [{"coding": [{"system": SNOMED, "code": "91251008", "display": "Physical therapy"}]}],
        "reasonCode": [{"coding": [{"system": ICD10, "code": "M54.50", "display": "Low back pain"}]}],
        "appointmentType": {
            "coding": [{"system": V2_0276, "code": "FOLLOWUP", "display": "A follow up visit"}]
        },
        "description": "Follow-up visit",
        "start": "2024-05-02T09:30:00-04:00",
        "end": "2024-05-02T10:15:00-04:00",
        "minutesDuration": 45,
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "participant": [
            {"actor": {"reference": "Patient/pat-1"}, "status": "accepted"},
            {
                "type": [{"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "PPRF"}]}],
                "actor": {"reference": "PractitionerRole/role-1"},
                "status": "accepted",
            },
            {"actor": {"reference": "Location/gym-1"}, "status": "accepted"},
        ],
    }
    base.update(overrides)
    return base


def context_bundle(focus: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle: the Appointment first, then what it references (two levels deep)."""
    resources = [
        focus,
        {
            "resourceType": "Patient",
            "id": "pat-1",
            "identifier": [{"system": MRN, "value": "MRN-77"}],
            "name": [{"family": "Okafor", "given": ["Ada", "N"]}],
            "birthDate": "1961-07-14",
            "gender": "female",
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-1",
            "practitioner": {"reference": "Practitioner/prac-1"},
        },
        {
            "resourceType": "Practitioner",
            "id": "prac-1",
            "identifier": [{"system": NPI, "value": "1234567893"}],
            "name": [{"family": "Lee", "given": ["Kim"], "prefix": ["Dr."]}],
        },
        {"resourceType": "Location", "id": "gym-1", "name": "Gym | East"},
        {
            "resourceType": "ServiceRequest",
            "id": "sr-1",
            "identifier": [{"system": "https://ortho.example/referrals", "value": "REF-7781"}],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": SNOMED, "code": "84478008"}]}],
            "subject": {"reference": "Patient/pat-1"},
        },
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"https://hub.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
            for r in resources
        ],
    }


def siu(payload: dict[str, Any], previous: dict[str, Any] | None = None) -> tuple[str, Any]:
    event, text = appointment_to_siu(payload, header=HEADER, control_id="CTL-1", now=NOW, previous=previous)
    assert "\n" not in text
    message = parse(text)
    check_structure("SIU_S12", message.names)
    return event, message


def validate(resource: dict[str, Any]) -> None:
    Appointment.model_validate(resource)
    model_class("Appointment").model_validate(resource)
    if "Appointment" in SUPPORTED_TYPES:
        assert [i for i in validate_resource(resource) if i.severity in ("error", "fatal")] == []


# ------------------------------------------------------------------------------------ triggers


@pytest.mark.parametrize(
    ("changes", "previous", "expected"),
    [
        ({}, None, "S12"),
        ({}, {"status": "pending"}, "S12"),
        ({}, {"status": "proposed"}, "S12"),
        ({}, {"status": "waitlist"}, "S12"),
        ({}, {"status": "cancelled"}, "S12"),  # booked again after a cancellation
        ({"start": "2024-05-03T09:30:00-04:00", "end": "2024-05-03T10:15:00-04:00"}, {}, "S13"),
        ({"end": "2024-05-02T10:30:00-04:00"}, {}, "S13"),
        ({"minutesDuration": 60}, {}, "S13"),
        ({"start": "2024-05-02T13:30:00Z"}, {}, "S14"),  # the same instant written in UTC
        ({"description": "Bring shoes"}, {}, "S14"),
        ({"status": "arrived"}, {}, "S14"),
        ({"status": "checked-in"}, {}, "S14"),
        ({"status": "fulfilled"}, {}, "S14"),
        ({"status": "cancelled"}, {}, "S15"),
        ({"status": "cancelled"}, None, "S15"),
        ({"status": "entered-in-error"}, {}, "S15"),
        ({"status": "noshow"}, {}, "S26"),
    ],
)
def test_trigger_choice(changes: dict[str, Any], previous: dict[str, Any] | None, expected: str) -> None:
    before = None if previous is None else appointment(**previous)
    event, message = siu(appointment(**changes), previous=before)
    assert event == expected
    msh, rgs = message.msh, message.first("RGS")
    assert (msh.get(9, 1, 1), msh.get(9, 1, 2), msh.get(9, 1, 3)) == ("SIU", expected, "SIU_S12")
    action = "A" if expected == "S12" else "U"
    assert rgs is not None and rgs.get(2) == action
    assert {s.get(2) for s in message.segments if s.name in ("AIS", "AIL", "AIP")} == {action}
    assert siu_event(appointment(**changes), before) == expected


@pytest.mark.parametrize("status", ["proposed", "pending", "waitlist"])
def test_an_appointment_that_is_not_booked_is_refused(status: str) -> None:
    with pytest.raises(UntranslatableResource, match="not booked"):
        siu(appointment(status=status))


def test_refusals() -> None:
    with pytest.raises(UntranslatableResource, match="never booked"):
        siu(appointment(status="cancelled"), previous=appointment(status="proposed"))
    with pytest.raises(UntranslatableResource, match="never booked"):
        siu(appointment(status="noshow"), previous=appointment(status="waitlist"))
    with pytest.raises(UntranslatableResource, match="status"):
        siu(appointment(status="booked-ish"))
    with pytest.raises(UntranslatableResource, match="status"):
        siu({k: v for k, v in appointment().items() if k != "status"})
    with pytest.raises(UntranslatableResource, match="not an Appointment"):
        siu({"resourceType": "Patient", "id": "pat-1"})
    bundle = context_bundle(appointment())
    bundle["entry"] = bundle["entry"][1:]  # the focus must come first
    with pytest.raises(UntranslatableResource, match="not an Appointment"):
        siu(bundle)
    with pytest.raises(UntranslatableResource, match="start"):
        siu({k: v for k, v in appointment().items() if k != "start"})
    with pytest.raises(UntranslatableResource, match=r"id or Appointment\.identifier"):
        siu({k: v for k, v in appointment().items() if k not in ("id", "identifier")})


def test_refusal_messages_name_fields_not_values() -> None:
    with pytest.raises(UntranslatableResource) as info:
        siu(context_bundle(appointment(status="proposed")))
    assert "Okafor" not in str(info.value) and "A-1001" not in str(info.value)


# ------------------------------------------------------------------------------------ fields


def test_segments_and_fields_of_a_booking_with_its_context() -> None:
    event, message = siu(context_bundle(appointment(serviceType=None)))
    assert event == "S12"
    assert message.names == ["MSH", "SCH", "TQ1", "NTE", "PID", "PV1", "RGS", "AIS", "AIL", "AIP"]
    sch, tq1, pid, pv1 = (message.first(n) for n in ("SCH", "TQ1", "PID", "PV1"))
    assert sch is not None and tq1 is not None and pid is not None and pv1 is not None
    assert (sch.get(1), sch.get(1, 1, 3), sch.get(1, 1, 4)) == (
        "A-1001",
        "https://rehab.example/sid/appointment",
        "URI",
    )
    assert (sch.get(2), sch.get(2, 1, 2)) == ("appt-1", "THFHIR")
    assert sch.components(6) == ["M54.50", "Low back pain", "I10C"]
    assert sch.components(7) == ["FOLLOWUP", "A follow up visit", "HL70276"]
    # no serviceType: the discipline of the ServiceRequest the Appointment is based on (OT here)
    assert sch.components(8) == ["84478008", "Occupational therapy", "SCT"]
    assert (sch.get(9), sch.get(10), sch.get(11)) == ("45", "min", "")
    assert sch.components(25) == ["Booked", "Booked", "HL70278", "booked", "booked", "HL7FHIRAS"]
    assert (sch.get(26), sch.get(26, 1, 3)) == ("REF-7781", "https://ortho.example/referrals")
    assert (sch.get(27), sch.get(27, 1, 2)) == ("sr-1", "THFHIR")
    assert (tq1.get(1), tq1.get(7), tq1.get(8)) == ("1", "20240502093000-0400", "20240502101500-0400")
    assert (pid.get(3), pid.get(5), pid.get(5, 1, 2), pid.get(7), pid.get(8)) == (
        "MRN-77",
        "Okafor",
        "Ada",
        "19610714",
        "F",
    )
    assert (pv1.get(1), pv1.get(2)) == ("1", "O")
    ais, ail, aip = message.first("AIS"), message.first("AIL"), message.first("AIP")
    assert ais is not None and ail is not None and aip is not None
    assert (ais.get(1), ais.get(3), ais.get(4), ais.get(7), ais.get(8), ais.get(10)) == (
        "1",
        "84478008",
        "20240502093000-0400",
        "45",
        "min",
        "Booked",
    )
    assert (ail.get(3), ail.get(3, 1, 10, 1), ail.get(3, 1, 10, 2), ail.get(6)) == (
        "Gym | East",
        "gym-1",
        "THFHIR",
        "20240502093000-0400",
    )
    assert ail.components(12) == ["Booked", "Booked", "HL70278", "accepted", "accepted", "HL7FHIRPS"]
    assert aip.components(3, 1)[:6] == ["1234567893", "Lee", "Kim", "", "", "Dr."]
    assert aip.get(3, 1, 9) == "NPI"
    assert (aip.get(3, 2, 1), aip.get(3, 2, 9)) == ("PractitionerRole/role-1", "THFHIR")
    assert aip.components(4) == ["PPRF", "", "HL7V3PT"]
    assert (aip.get(6), aip.get(12)) == ("20240502093000-0400", "Booked")
    assert message.msh.get(7) == "20240501080000+0000"


def test_an_appointment_alone_names_its_patient_by_id_and_has_no_placer_order() -> None:
    _, message = siu(appointment(participant=appointment()["participant"][:1], description=None))
    assert message.names == ["MSH", "SCH", "TQ1", "PID", "PV1", "RGS", "AIS"]
    pid, sch = message.first("PID"), message.first("SCH")
    assert pid is not None and sch is not None
    assert (pid.get(3), pid.get(3, 1, 4), pid.get(3, 1, 5)) == ("pat-1", "THFHIR", "PI")
    assert sch.components(8) == ["91251008", "Physical therapy", "SCT"]
    assert (sch.get(26), sch.get(27)) == ("", "sr-1")


def test_defaults_without_reason_type_duration_or_people() -> None:
    bare = {
        "resourceType": "Appointment",
        "id": "appt-2",
        "status": "booked",
        "start": "2024-05-02T13:30:00Z",
        "end": "2024-05-02T14:00:00Z",
        "participant": [{"actor": {"reference": "Location/room-2"}, "status": "accepted"}],
    }
    _, message = siu(bare)
    assert message.names == ["MSH", "SCH", "TQ1", "RGS", "AIL"]  # no patient: no PID / PV1
    sch = message.first("SCH")
    assert sch is not None
    assert sch.components(6) == ["S12", "Notification of new appointment booking", "HL70003"]
    assert (sch.get(1), sch.get(7), sch.get(8), sch.get(9), sch.get(10)) == ("", "", "", "", "")
    back = read_appointment(message)
    assert "reasonCode" not in back and "minutesDuration" not in back
    assert back["participant"] == [{"actor": {"reference": "Location/room-2"}, "status": "accepted"}]
    # AIS-7: minutes between start and end when minutesDuration is absent
    _, with_service = siu({**bare, "serviceType": [{"text": "Aquatic therapy"}]})
    ais = with_service.first("AIS")
    assert ais is not None and (ais.get(3, 1, 2), ais.get(7), ais.get(8)) == ("Aquatic therapy", "30", "min")


def test_a_practitioner_without_npi_goes_by_its_fhir_id_with_its_name() -> None:
    bundle = context_bundle(appointment())
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Practitioner":
            entry["resource"]["identifier"] = []
    _, message = siu(bundle)
    aip = message.first("AIP")
    assert aip is not None and aip.count(3) == 1
    assert aip.components(3)[:3] == ["PractitionerRole/role-1", "Lee", "Kim"]
    assert aip.get(3, 1, 9) == "THFHIR"
    assert aip.components(4) == ["PPRF", "", "HL7V3PT"]
    plain = appointment(participant=[{"actor": {"reference": "Practitioner/p-9"}, "status": "tentative"}])
    aip = siu(plain)[1].first("AIP")
    assert aip is not None and aip.components(4) == ["AT", "Attending", "HL70443"]
    assert read_appointment(appointment_to_siu(plain, header=HEADER, control_id="C", now=NOW)[1])[
        "participant"
    ] == [{"actor": {"reference": "Practitioner/p-9"}, "status": "tentative"}]


def test_cancellation() -> None:
    cancelled = appointment(
        status="cancelled",
        cancelationReason={"coding": [{"code": "pat", "display": "Patient request"}]},
        comment="Called on Monday",
    )
    del cancelled["start"], cancelled["end"]
    event, message = siu(cancelled, previous=appointment())
    assert event == "S15"
    assert message.names == ["MSH", "SCH", "NTE", "NTE", "NTE", "PID", "PV1", "RGS", "AIS", "AIL", "AIP"]
    sch = message.first("SCH")
    assert sch is not None
    assert sch.components(6) == ["M54.50", "Low back pain", "I10C"]  # the appointment's reason, kept
    assert sch.components(25)[:4] == ["Cancelled", "Cancelled", "HL70278", "cancelled"]
    notes = {n.get(4): n.get(3) for n in message.all("NTE")}
    assert notes == {"DE": "Follow-up visit", "RE": "Called on Monday", "1R": "Patient request"}
    back = read_appointment(message)
    assert back["status"] == "cancelled" and back["cancelationReason"] == {"text": "Patient request"}
    assert "start" not in back
    validate(back)
    noshow = siu(appointment(status="noshow"), previous=appointment())[1].first("SCH")
    assert noshow is not None and noshow.components(25)[:4] == ["Noshow", "Noshow", "HL70278", "noshow"]
    deleted = siu(appointment(status="entered-in-error"))[1].first("SCH")
    assert deleted is not None and deleted.get(25) == "Deleted"


def test_delimiters_and_line_breaks_in_text_are_escaped() -> None:
    description = "Eval | re-eval ^ ~ shoes \\ towel & water"
    comment = "Line one\nLine two | more"
    _, text = appointment_to_siu(
        appointment(description=description, comment=comment, patientInstruction="Arrive 10' early"),
        header=HEADER,
        control_id="C",
        now=NOW,
    )
    lines = text.rstrip("\r").split("\r")
    assert [line[:3] for line in lines].count("NTE") == 3
    nte = next(line for line in lines if line.startswith("NTE|1|"))
    assert nte == "NTE|1|L|Eval \\F\\ re-eval \\S\\ \\R\\ shoes \\E\\ towel \\T\\ water|DE^Description^L"
    assert "Line one\\.br\\Line two \\F\\ more" in text
    back = read_appointment(text)
    assert (back["description"], back["comment"], back["patientInstruction"]) == (
        description,
        comment,
        "Arrive 10' early",
    )


def test_aware_now_is_written_in_utc() -> None:
    now = datetime(2024, 5, 1, 4, 0, tzinfo=timezone(timedelta(hours=-4)))
    _, text = appointment_to_siu(appointment(), header=HEADER, control_id="C", now=now)
    assert parse(text).msh.get(7) == "20240501080000+0000"


def test_other_separators() -> None:
    from mappings.hl7v2 import Separators

    header = OutboundHeader(separators=Separators("#", "$", "*", "!", "%"))
    _, text = appointment_to_siu(appointment(description="a#b$c"), header=header, control_id="C", now=NOW)
    assert text.startswith("MSH#$*!%#")
    assert read_appointment(text)["description"] == "a#b$c"


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

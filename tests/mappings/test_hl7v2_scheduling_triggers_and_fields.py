"""FHIR Appointment -> SIU (S12/S13/S14/S15/S26): trigger choice, refusals, segment order, field
positions and escaping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mappings.hl7v2 import (
    OutboundHeader,
    UntranslatableResource,
    appointment_to_siu,
    parse,
    read_appointment,
)
from mappings.hl7v2.scheduling import siu_event
from tests.mappings.scheduling_support import HEADER, NOW, appointment, context_bundle, siu, validate

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

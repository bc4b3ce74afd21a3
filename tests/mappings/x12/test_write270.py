"""The 270 eligibility inquiry: read from FHIR, written per 005010X279A1."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from mappings.x12.eligibility import DISCIPLINE_SERVICE_TYPES, InquiryError, inquiry_from_fhir
from mappings.x12.reader import Segment, read_interchanges
from mappings.x12.validation import validate
from mappings.x12.write270 import write_270
from tests.mappings.x12.claims_support import control, submitter
from tests.mappings.x12.eligibility_support import clinic_org, coverage, patient, payer_org

CREATED = datetime(2026, 3, 6, 9, 30)
ON = date(2026, 3, 9)


def _segments(text: str) -> list[Segment]:
    parsed = read_interchanges(text)
    assert parsed.errors == []
    (transaction,) = parsed.transactions
    return transaction.segments


def test_service_types_per_discipline() -> None:
    assert DISCIPLINE_SERVICE_TYPES == {"PT": "PT", "OT": "AD", "SLP": "AF"}


def test_inquiry_from_fhir_reads_member_group_payer_and_npi() -> None:
    inquiry = inquiry_from_fhir(coverage(), patient(), clinic_org(), payer_org(),
                                service_types=[DISCIPLINE_SERVICE_TYPES["PT"]], on=ON, trace="ELG-0001")
    assert inquiry.subscriber.member_id == "ACM123456701"
    assert (inquiry.subscriber.last_name, inquiry.subscriber.first_name, inquiry.subscriber.middle_name) == (
        "Smith", "Laura", "J")
    assert inquiry.subscriber.gender == "F" and inquiry.subscriber.birth_date == date(1980, 6, 1)
    assert inquiry.group_number == "GRP-7788" and inquiry.patient is None and inquiry.relationship == "18"
    assert (inquiry.payer.name, inquiry.payer.payer_id) == ("Acme Health Plan", "ACME1")
    assert inquiry.provider.npi == "1234567893"


def test_inquiry_for_a_dependent_needs_the_subscriber() -> None:
    child = patient("Smith", ("Tommy",), birth="2015-09-20", gender="male", pid="p2")
    with pytest.raises(InquiryError, match=r"Coverage.subscriber.*270.subscriber"):
        inquiry_from_fhir(coverage("child"), child, clinic_org(), payer_org(), service_types=["AF"], on=ON, trace="T1")
    inquiry = inquiry_from_fhir(coverage("child"), child, clinic_org(), payer_org(), service_types=["AF"], on=ON,
                                trace="T1", subscriber=patient())
    assert inquiry.relationship == "19" and inquiry.patient is not None and inquiry.patient.member_id is None
    assert inquiry.subscriber.first_name == "Laura"


def test_missing_data_names_the_fhir_path_not_the_value() -> None:
    no_npi = clinic_org() | {"identifier": []}
    with pytest.raises(InquiryError, match=r"^Organization.identifier: .*270.provider-npi"):
        inquiry_from_fhir(coverage(), patient(), no_npi, payer_org(), service_types=["PT"], on=ON, trace="T1")
    with pytest.raises(InquiryError, match=r"Coverage.subscriberId") as caught:
        inquiry_from_fhir(coverage() | {"subscriberId": ""}, patient(), clinic_org(), payer_org(),
                          service_types=["PT"], on=ON, trace="T1")
    assert "Smith" not in str(caught.value)
    with pytest.raises(InquiryError, match=r"Patient.birthDate"):
        inquiry_from_fhir(coverage(), patient(birth="1980"), clinic_org(), payer_org(), service_types=["PT"],
                          on=ON, trace="T1")


def _inquiries() -> list:  # type: ignore[type-arg]
    self_pt = inquiry_from_fhir(coverage(), patient(), clinic_org(), payer_org(),
                                service_types=["PT", "AD"], on=ON, trace="ELG-0001")
    child = inquiry_from_fhir(coverage("child"), patient("Smith", ("Tommy",), birth="2015-09-20", gender="male"),
                              clinic_org(), payer_org(), service_types=["AF"], on=ON, trace="ELG-0002",
                              subscriber=patient())
    return [self_pt, child]


def test_270_structure() -> None:
    out = write_270(_inquiries(), submitter(), control(9), created=CREATED)
    parsed = read_interchanges(out)
    (group,) = parsed.interchanges[0].groups
    assert (group.functional_id, group.version) == ("HS", "005010X279A1")
    segments = _segments(out)
    ids = [s.id for s in segments]
    assert segments[0].elements == ("ST", "270", "0009", "005010X279A1")
    assert segments[1].elements == ("BHT", "0022", "13", "000000009", "20260306", "0930")
    assert segments[-1].elements == ("SE", str(len(segments)), "0009")
    hls = [s.elements[1:] for s in segments if s.id == "HL"]
    assert hls == [("1", "", "20", "1"), ("2", "1", "21", "1"), ("3", "2", "22", "0"), ("4", "2", "22", "1"),
                   ("5", "4", "23", "0")]
    nm1 = [s.elements for s in segments if s.id == "NM1"]
    assert nm1[0] == ("NM1", "PR", "2", "Acme Health Plan", "", "", "", "", "PI", "ACME1")
    assert nm1[1] == ("NM1", "1P", "2", "Riverside Rehab Clinic", "", "", "", "", "XX", "1234567893")
    assert nm1[2] == ("NM1", "IL", "1", "Smith", "Laura", "J", "", "", "MI", "ACM123456701")
    assert nm1[4] == ("NM1", "03", "1", "Smith", "Tommy")
    trns = [s.elements for s in segments if s.id == "TRN"]
    assert [t[:3] for t in trns] == [("TRN", "1", "ELG-0001"), ("TRN", "1", "ELG-0002")]
    assert all(len(t[3]) == 10 for t in trns)
    assert [s.elements for s in segments if s.id == "EQ"] == [("EQ", "PT"), ("EQ", "AD"), ("EQ", "AF")]
    assert [s.elements for s in segments if s.id == "DTP"] == [("DTP", "291", "D8", "20260309")] * 2
    assert ("REF", "6P", "GRP-7788") in [s.elements for s in segments]
    assert ("INS", "N", "19") in [s.elements for s in segments]
    # the dependent's questions come after its own HL, not under the subscriber
    assert ids.index("EQ", ids.index("HL", ids.index("TRN") + 1)) > [i for i, s in enumerate(segments)
                                                                     if s.id == "HL"][-1]
    assert out == write_270(_inquiries(), submitter(), control(9), created=CREATED)


def test_270_envelope_is_checked_and_the_missing_pyx12_map_is_a_warning() -> None:
    out = write_270(_inquiries(), submitter(), control(9), created=CREATED)
    issues = validate(out)
    assert [i for i in issues if i.severity == "error"] == []
    assert [(i.code, i.element) for i in issues] == [("map-not-available", "GS08")]
    broken = out.replace("SE*", "SE*1", 1)
    assert [(i.segment_id, i.code) for i in validate(broken) if i.severity == "error"] == [("SE", "x12.se-count")]

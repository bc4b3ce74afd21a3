"""The 837P writer: a week of therapy claims conforms to 005010X222A1 and says what was billed."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mappings.billing.model import Person
from mappings.x12.envelope import X12WriteError, amount, clean
from mappings.x12.reader import Segment, read_interchanges
from mappings.x12.validation import validate
from mappings.x12.write837 import write_837p
from tests.mappings.x12.claims_support import (
    JONES,
    control,
    pt_evaluation,
    replacement,
    slp_for_dependent,
    submitter,
    week_of_claims,
)

CREATED = datetime(2026, 3, 6, 18, 5)


def _segments(text: str) -> list[Segment]:
    parsed = read_interchanges(text)
    assert parsed.errors == []
    (transaction,) = parsed.transactions
    return transaction.segments


def _all(segments: list[Segment], seg_id: str, first: str | None = None) -> list[Segment]:
    return [s for s in segments if s.id == seg_id and (first is None or s.get(1) == first)]


@pytest.fixture(scope="module")
def week() -> str:
    return write_837p(week_of_claims(), submitter(), control(), created=CREATED)


def test_a_week_of_claims_conforms_to_the_guide(week: str) -> None:
    assert validate(week) == []


def test_envelope_headers_and_counts(week: str) -> None:
    isa = week[:106]
    assert len(isa) == 106 and isa.endswith("~")
    fields = isa[:-1].split("*")
    assert fields[6] == "RRB000123      " and fields[8] == "CLEARHOUSE01   "
    assert fields[11:17] == ["^", "00501", "000000042", "0", "T", ":"]
    parsed = read_interchanges(week)
    (group,) = parsed.interchanges[0].groups
    assert (group.functional_id, group.version, group.control_number) == ("HC", "005010X222A1", "42")
    segments = _segments(week)
    assert segments[0].elements == ("ST", "837", "0042", "005010X222A1")
    assert segments[-1].elements == ("SE", str(len(segments)), "0042")
    assert segments[1].elements == ("BHT", "0019", "00", "000000042", "20260306", "1805", "CH")
    assert "\n" not in week


def test_hierarchy_one_billing_provider_each_subscriber_under_it_dependent_under_subscriber(week: str) -> None:
    segments = _segments(week)
    hls = [s.elements[1:] for s in _all(segments, "HL")]
    # clinic: Jones (two claims, one 2000B), Garcia; east clinic: Smith with her child, Brown
    assert hls == [("1", "", "20", "1"), ("2", "1", "22", "0"), ("3", "1", "22", "0"),
                   ("4", "", "20", "1"), ("5", "4", "22", "1"), ("6", "5", "23", "0"), ("7", "4", "22", "0")]
    billing = [s.elements for s in _all(segments, "NM1", "85")]
    assert [b[3] for b in billing] == ["Riverside Rehab Clinic", "Riverside Rehab East"]
    assert billing[0][8:] == ("XX", "1234567893")
    assert _all(segments, "REF", "EI")[0].get(2) == "123456789"
    assert _all(segments, "PRV", "BI")[0].elements == ("PRV", "BI", "PXC", "261QR0400X")
    sbrs = [s.elements for s in _all(segments, "SBR")]
    assert sbrs[0] == ("SBR", "P", "18", "", "", "", "", "", "", "MB")
    assert sbrs[2] == ("SBR", "P", "", "GRP-7788", "", "", "", "", "", "CI")  # subscriber is not the patient
    assert _all(segments, "PAT")[0].elements == ("PAT", "19")
    patient = _all(segments, "NM1", "QC")[0]
    assert patient.elements[:5] == ("NM1", "QC", "1", "Smith", "Tommy") and len(patient.elements) == 5
    assert _all(segments, "NM1", "PR")[0].elements == ("NM1", "PR", "2", "Medicare Part B", "", "", "", "", "PI",
                                                       "00952")
    # one CLM per claim, Jones's two claims under the same 2000B (HL 2)
    clms = [s.get(1) for s in _all(segments, "CLM")]
    assert clms == ["TH2026030201", "TH2026030402", "TH2026030303", "TH2026030504", "TH2026022705"]
    hl3 = next(s.position for s in _all(segments, "HL") if s.get(1) == "3")
    assert all(clm.position < hl3 for clm in _all(segments, "CLM")[:2])


def test_claim_segments(week: str) -> None:
    segments = _segments(week)
    clm = _all(segments, "CLM")[0]
    assert clm.elements == ("CLM", "TH2026030201", "310.75", "", "", "11:B:1", "Y", "A", "Y", "Y")
    assert clm.components(5) == ("11", "B", "1")
    assert [s.elements for s in _all(segments, "DTP")[:2]] == [("DTP", "431", "D8", "20260210"),
                                                             ("DTP", "454", "D8", "20260302")]
    assert _all(segments, "HI")[0].elements == ("HI", "ABK:M5450", "ABF:M6281")
    assert _all(segments, "NM1", "DN")[0].elements == ("NM1", "DN", "1", "Patel", "Ravi", "", "", "", "XX",
                                                       "1790812365")
    assert _all(segments, "PRV", "PE")[0].elements == ("PRV", "PE", "PXC", "225100000X")
    assert _all(segments, "REF", "G1")[0].get(2) == "PA778899"
    replacement_clm = _all(segments, "CLM")[-1]
    assert replacement_clm.components(5) == ("11", "B", "7")
    f8 = _all(segments, "REF", "F8")
    assert [s.get(2) for s in f8] == ["22026058123400"]
    assert f8[0].position > replacement_clm.position


def test_service_lines(week: str) -> None:
    segments = _segments(week)
    sv1 = [s.elements for s in _all(segments, "SV1")]
    assert sv1[0] == ("SV1", "HC:97161:GP", "150", "UN", "1", "", "", "1:2")
    assert sv1[1] == ("SV1", "HC:97110:GP", "75.5", "UN", "2", "", "", "1:2")
    assert sv1[2] == ("SV1", "HC:97140:GP:59", "40", "UN", "1", "", "", "1")
    assert sv1[3] == ("SV1", "HC:97530:GP", "45.25", "UN", "1", "", "", "2")
    assert ("SV1", "HC:97165:GO", "160", "UN", "1", "", "", "1:2") in sv1
    assert ("SV1", "HC:92507:GN", "120", "UN", "1", "", "", "1") in sv1
    assert ("SV1", "HC:97530:GP:CQ", "45.25", "UN", "1", "", "", "1") in sv1
    assert ("SV1", "HC:97116:GP", "38", "UN", "1", "22", "", "1") in sv1  # POS only where it differs
    assert len(_all(segments, "LX")) == len(sv1) == 11
    assert _all(segments, "DTP", "472")[0].elements == ("DTP", "472", "D8", "20260302")
    assert [s.get(2) for s in _all(segments, "REF", "6R")][:4] == [f"TH2026030201-{n}" for n in range(1, 5)]
    # the assistant's line names its own rendering provider (2420A) right after the line's REF*6R
    rendering = [s for s in _all(segments, "NM1", "82")]
    assert [r.get(3) for r in rendering] == ["Nguyen", "Nguyen", "Okafor", "Lopez", "Schmidt", "Nguyen"]
    okafor = next(r for r in rendering if r.get(3) == "Okafor")
    before = segments[segments.index(okafor) - 1]
    assert before.id == "REF" and before.get(2) == "TH2026030402-2"


def test_same_claims_give_the_same_bytes_and_newlines_stay_valid() -> None:
    first = write_837p(week_of_claims(), submitter(), control(), created=CREATED)
    assert first == write_837p(week_of_claims(), submitter(), control(), created=CREATED)
    readable = write_837p(week_of_claims(), submitter(), control(), created=CREATED, newline=True)
    assert readable.replace("~\n", "~") == first
    assert validate(readable) == []


def test_separators_and_foreign_characters_in_data_never_break_the_file() -> None:
    hostile = Person(last_name="O'Brien*Smith~", first_name="José:Ana^", member_id="1EG4TE5MK73",
                     birth_date=JONES.birth_date, gender="M",
                     address=JONES.address.model_copy(update={"line1": "12 Elm St ~ Apt *4", "city": "Zürich"}))
    claim = pt_evaluation().model_copy(update={"subscriber": hostile})
    out = write_837p([claim], submitter(), control(), created=CREATED)
    assert validate(out) == []
    segments = _segments(out)
    subscriber = _all(segments, "NM1", "IL")[0]
    assert subscriber.elements[3:5] == ("O'Brien Smith", "Jose Ana")
    assert _all(segments, "N3")[1].get(1) == "12 Elm St Apt 4"
    assert _all(segments, "N4")[1].get(1) == "Zurich"
    assert clean("a*b~c:d^e\u00e9\u4e2d") == "a b c d ee"


def test_long_names_are_cut_to_the_element_maximum_and_long_ids_refused() -> None:
    long_name = pt_evaluation().billing_provider.model_copy(update={"last_or_org_name": "Clinic " * 20})
    claim = pt_evaluation().model_copy(update={"billing_provider": long_name})
    out = write_837p([claim], submitter(), control(), created=CREATED)
    assert len(_all(_segments(out), "NM1", "85")[0].get(3)) <= 60
    assert validate(out) == []
    too_long = pt_evaluation().model_copy(update={"prior_authorization": "A" * 51})
    with pytest.raises(X12WriteError, match=r"2300 REF02.*x12.element-length"):
        write_837p([too_long], submitter(), control(), created=CREATED)


def test_claims_the_writer_refuses() -> None:
    with pytest.raises(X12WriteError, match=r"2010BA NM103: .*837p.required"):
        write_837p([pt_evaluation().model_copy(update={"subscriber": JONES.model_copy(update={"last_name": "*~"})})],
                   submitter(), control(), created=CREATED)
    with pytest.raises(X12WriteError, match="837p.original-reference"):
        write_837p([replacement().model_copy(update={"original_reference": None})], submitter(), control(),
                   created=CREATED)
    with pytest.raises(X12WriteError, match="837p.hi-count"):
        write_837p([pt_evaluation().model_copy(update={"diagnoses": tuple(f"M{n:04d}" for n in range(13))})],
                   submitter(), control(), created=CREATED)
    with pytest.raises(X12WriteError, match="837p.diagnosis-pointer"):
        bad = pt_evaluation()
        line = bad.lines[0].model_copy(update={"diagnosis_pointers": (3,)})
        write_837p([bad.model_copy(update={"lines": (line,)})], submitter(), control(), created=CREATED)
    with pytest.raises(X12WriteError, match="837p.no-claims"):
        write_837p([], submitter(), control(), created=CREATED)


def test_amounts_follow_the_x12_decimal_rules() -> None:
    assert [amount(Decimal(v)) for v in ("150.00", "75.50", "45.25", "0.00", "1234.5", "0.005")] == [
        "150", "75.5", "45.25", "0", "1234.5", "0.01"]


def test_dependent_claim_hangs_under_the_patient_level() -> None:
    out = write_837p([slp_for_dependent()], submitter(), control(7), created=CREATED)
    assert validate(out) == []
    ids = [s.id for s in _segments(out)]
    assert ids.index("PAT") < ids.index("CLM")
    assert re.search(r"HL\*3\*2\*23\*0~PAT\*19~NM1\*QC\*1\*Smith\*Tommy~", out)


@settings(max_examples=60, deadline=None, database=None)
@given(last=st.text(min_size=1, max_size=80), first=st.text(min_size=1, max_size=50),
       line1=st.text(min_size=1, max_size=70))
def test_any_name_or_address_keeps_the_segments_whole(last: str, first: str, line1: str) -> None:
    assume(clean(last) and clean(first) and clean(line1))  # nothing left after cleaning is refused (below)
    person = JONES.model_copy(update={"last_name": last, "first_name": first,
                                      "address": JONES.address.model_copy(update={"line1": line1})})
    out = write_837p([pt_evaluation().model_copy(update={"subscriber": person})], submitter(), control(),
                     created=CREATED)
    segments = _segments(out)
    assert [s.id for s in segments] == [s.id for s in _segments(
        write_837p([pt_evaluation()], submitter(), control(), created=CREATED))]
    subscriber = _all(segments, "NM1", "IL")[0]
    assert len(subscriber.elements) == 10 and len(subscriber.get(3)) <= 60 and len(subscriber.get(4)) <= 35
    assert out.isascii()


def test_ack_requested_sets_isa14() -> None:
    out = write_837p([pt_evaluation()], submitter(), control(), created=CREATED, ack_requested=True)
    assert out[:106].split("*")[14] == "1"
    assert validate(out) == []

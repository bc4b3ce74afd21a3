"""The 999 and TA1 readers, on acknowledgements written the way clearinghouses send them."""

from __future__ import annotations

from mappings.x12.read999 import AckReport, read_999, read_ta1
from mappings.x12.reader import read_interchanges

ISA = "ISA|00|          |00|          |ZZ|CLEARINGHOUSE  |ZZ|THERAPYCLINIC  |260105|1200|^|00501|000000101|0|P|>~"

# `|` elements, `>` components, `~` + CRLF after every segment; the clearinghouse accepts the first
# 837 of our group 1001 and rejects the second, naming two claims by their CLM01
REJECTING_ONE_OF_TWO = "\r\n".join([
    ISA,
    "TA1|000000045|260104|1830|A|000~",
    "GS|FA|CLEARINGHOUSE|THERAPYCLINIC|20260105|1200|101|X|005010X231A1~",
    "ST|999|0001|005010X231A1~",
    "AK1|HC|1001|005010X222A1~",
    "AK2|837|0001|005010X222A1~",
    "IK5|A~",
    "AK2|837|0002|005010X222A1~",
    "IK3|NM1|22|2010BA|8~",
    "CTX|CLM01>PCN-0002-A~",
    "IK4|9|67|7|W12345~",
    "IK3|CLM|31|2300|8~",
    "CTX|CLM01>PCN-0002-B~",
    "IK4|5>1|1331|7|99~",
    "CTX|SITUATIONAL TRIGGER|CLM|31|2300|5>1~",
    "IK5|R|5~",
    "AK9|P|2|2|1~",
    "SE|15|0001~",
    "GE|1|101~",
    "IEA|1|000000101~",
    "",
])


def _only_999(text: str) -> AckReport:
    x12 = read_interchanges(text)
    (ts,) = list(x12.transactions)
    return read_999(ts)


def test_a_999_rejecting_one_of_two_sets_names_segments_elements_and_claims() -> None:
    report = _only_999(REJECTING_ONE_OF_TWO)
    assert report.ok, report.errors
    assert (report.functional_id, report.group_control_number, report.version) == ("HC", "1001", "005010X222A1")
    first, second = report.transactions
    assert (first.set_id, first.control_number, first.implementation_reference) == ("837", "0001", "005010X222A1")
    assert first.accepted and first.segment_errors == ()
    assert not second.accepted
    assert second.status is not None and second.status.description == "Rejected"
    assert [(c.code, c.description) for c in second.errors] == [("5", "One or more segments in error")]
    assert second.rejected_claims == ("PCN-0002-A", "PCN-0002-B")

    nm1, clm = second.segment_errors
    assert (nm1.segment_id, nm1.position, nm1.loop_id, nm1.error.code) == ("NM1", 22, "2010BA", "8")
    assert nm1.error.description == "Segment has data element errors"
    assert nm1.business_unit is not None and nm1.business_unit.reference == "PCN-0002-A"
    (bad_id,) = nm1.elements
    assert (bad_id.position, bad_id.component, bad_id.reference_number) == (9, None, "67")
    assert (bad_id.error.code, bad_id.error.description, bad_id.bad_value) == ("7", "Invalid code value", "W12345")

    (place,) = clm.elements
    assert (place.position, place.component, place.reference_number, place.bad_value) == (5, 1, "1331", "99")
    (trigger,) = place.contexts  # the CTX after an IK4 belongs to that element, not to the segment
    assert not trigger.is_business_unit
    assert (trigger.segment_id, trigger.position, trigger.loop_id, trigger.element) == ("CLM", 31, "2300", ("5", "1"))
    assert [c.reference for c in clm.contexts] == ["PCN-0002-B"]

    assert report.group is not None
    assert (report.group.status.code, report.group.included, report.group.received, report.group.accepted) == (
        "P", 2, 2, 1)
    assert report.group.status.description == "Partially accepted, at least one transaction set was rejected"


def test_ta1_accepted_and_rejected_with_note_description() -> None:
    x12 = read_interchanges(REJECTING_ONE_OF_TWO)
    (ta1,) = x12.interchanges[0].acknowledgements
    ack = read_ta1(ta1)
    assert (ack.control_number, ack.date, ack.time, ack.accepted, ack.note.description) == (
        "000000045", "260104", "1830", True, "No error")
    rejected = REJECTING_ONE_OF_TWO.replace("TA1|000000045|260104|1830|A|000~", "TA1|000000046|260104|1831|R|022~")
    ack = read_ta1(read_interchanges(rejected).interchanges[0].acknowledgements[0])
    assert not ack.accepted
    assert (ack.status.description, ack.note.code, ack.note.description) == (
        "Rejected", "022", "Invalid control structure")


def _set(body: list[str], control: str = "0001") -> list[str]:
    return [f"ST*999*{control}*005010X231A1~", *body, f"SE*{len(body) + 2}*{control}~"]


def _file(*sets: list[str]) -> str:
    segments = [s for one in sets for s in one]
    return "".join([
        "ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*THERAPYCLINIC  *260105*1200*^*00501*000000102*0*P*:~",
        "GS*FA*CLEARINGHOUSE*THERAPYCLINIC*20260105*1200*102*X*005010X231A1~",
        *segments,
        f"GE*{len(sets)}*102~IEA*1*000000102~",
    ])


def test_unknown_codes_are_kept_without_description_and_missing_optional_segments_are_fine() -> None:
    report = _only_999(_file(_set(["AK1*HC*1002~", "AK2*837*0007~", "IK3*SV1*40**Z9~", "IK4*1:2*235*I99~",
                                   "IK5*Q*I5~", "AK9*Q*1*1*0~"])))
    assert report.ok, report.errors
    assert report.version == ""
    (response,) = report.transactions
    assert response.implementation_reference == ""
    assert response.status is not None
    assert (response.status.code, response.status.description, response.accepted) == ("Q", None, False)
    (error,) = response.segment_errors
    assert (error.loop_id, error.error.code, error.error.description, error.business_unit) == ("", "Z9", None, None)
    assert (error.elements[0].error.code, error.elements[0].error.description) == ("I99", None)
    assert [(c.code, c.description) for c in response.errors] == [
        ("I5", "Implementation one or more segments in error")]


def test_a_999_without_ak1_names_the_rule_and_the_rest_is_read() -> None:
    text = _file(_set(["AK2*837*0001*005010X222A1~", "IK5*A~", "AK9*A*1*1*1~"]))
    report = _only_999(text)
    missing = [e for e in report.errors if e.rule == "x12.999.missing-ak1"]
    assert len(missing) == 1 and missing[0].segment_id == "ST" and missing[0].position == 3
    assert [e.rule for e in report.errors if e.rule != "x12.999.missing-ak1"] == ["x12.999.sequence"]  # AK2 before AK1
    assert report.transactions[0].accepted and report.group is not None


def test_structure_errors_name_segment_position_and_rule() -> None:
    body = ["AK1*HC*1003*005010X222A1~", "IK4*2*66*1~", "AK2*837*0001~", "IK3*CLM*20*2300*8~", "BOGUS*1~",
            "AK2*837*0002~", "IK5*A~"]
    report = _only_999(_file(_set(body)))
    found = {(e.rule, e.segment_id, e.position) for e in report.errors}
    # ISA=1, GS=2, ST=3, AK1=4, IK4=5, AK2=6, IK3=7, BOGUS=8, AK2=9, IK5=10, SE=11
    assert found == {
        ("x12.999.sequence", "IK4", 5),
        ("x12.999.unknown-segment", "BOGUS", 8),
        ("x12.999.missing-ik5", "AK2", 9),
        ("x12.999.missing-ak9", "SE", 11),
    }
    assert all(e.transaction == "0001" for e in report.errors)
    first, second = report.transactions
    assert first.status is None and not first.accepted and len(first.segment_errors) == 1
    assert second.accepted and report.group is None


def test_broken_sets_carry_the_reader_errors_and_the_other_sets_are_still_read() -> None:
    good = _set(["AK1*HC*1004*005010X222A1~", "AK2*837*0001~", "IK5*A~", "AK9*A*1*1*1~"], "0002")
    no_se = _set(["AK1*HC*1005*005010X222A1~", "AK2*837*0001~", "IK5*R*5~", "AK9*R*1*1*0~"], "0001")[:-1]
    wrong_count = _set(["AK1*HC*1006*005010X222A1~", "AK2*837*0001~", "IK5*A~", "AK9*A*1*1*1~"], "0003")
    wrong_count[-1] = "SE*9*0003~"
    x12 = read_interchanges(_file(no_se, good, wrong_count))
    reports = [read_999(ts) for ts in x12.transactions]
    assert [r.control_number for r in reports] == ["0001", "0002", "0003"]
    assert [(e.rule, e.segment_id, e.position) for e in reports[0].errors] == [("x12.missing-se", "ST", 8)]
    assert reports[0].group is not None and reports[0].group.status.code == "R"  # read as far as it goes
    assert reports[1].ok and reports[1].transactions[0].accepted
    assert [(e.rule, e.segment_id, e.element) for e in reports[2].errors] == [("x12.se-count", "SE", 1)]
    assert reports[2].group_control_number == "1006"


def test_a_truncated_999_keeps_what_it_has() -> None:
    text = _file(_set(["AK1*HC*1007*005010X222A1~", "AK2*837*0001~", "IK3*NM1*8*2010AA*3~"]))
    text = text[: text.index("~SE*") + 1]  # the file stops after the IK3
    report = _only_999(text)
    rules = [e.rule for e in report.errors]
    assert rules[0] == "x12.truncated" and "x12.999.missing-ik5" in rules and "x12.999.missing-ak9" in rules
    (response,) = report.transactions
    assert response.segment_errors[0].error.description == "Required segment missing"


def test_a_997_is_read_like_a_999() -> None:
    text = _file(["ST*997*0001~", "AK1*HC*1008~", "AK2*837*0001~", "AK3*N4*14*2010AA*8~", "AK4*2*19*1~",
                  "AK5*R*5~", "AK9*R*1*1*0~", "SE*8*0001~"])
    report = _only_999(text)
    assert report.ok, report.errors
    (response,) = report.transactions
    assert not response.accepted
    (error,) = response.segment_errors
    assert (error.segment_id, error.position, error.loop_id) == ("N4", 14, "2010AA")
    assert error.elements[0].error.description == "Required data element missing"

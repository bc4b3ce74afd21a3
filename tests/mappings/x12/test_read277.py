"""The 277CA reader, on claim acknowledgements written the way clearinghouses send them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from mappings.x12.ack_codes import classify_category
from mappings.x12.ack_fhir import claim_status_summary
from mappings.x12.read277 import ClaimAckReport, read_277
from mappings.x12.reader import read_interchanges

ENVELOPE_HEAD = [
    "ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*THERAPYCLINIC  *260106*0815*^*00501*000000202*0*P*:~",
    "GS*HN*CLEARINGHOUSE*THERAPYCLINIC*20260106*0815*202*X*005010X214~",
]
ENVELOPE_TAIL = ["GE*1*202~", "IEA*1*000000202~"]

# one payer, one receiver with a batch receipt, two billing providers; provider 1 has an accepted
# claim with two lines and a rejected claim (two STC segments, STC10 repeated composite); provider 2
# has a patient with a claim whose category code is not in any list and an accepted claim with a
# rejected line
CLAIMS = [
    "ST*277*0001*005010X214~",
    "BHT*0085*08*277CA-0001*20260106*0815*TH~",
    "HL*1**20*1~",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*60054~",
    "TRN*1*20260106-0001~",
    "DTP*050*D8*20260106~",
    "DTP*009*D8*20260106~",
    "HL*2*1*21*1~",
    "NM1*41*2*THERAPY CLINIC*****46*TC001~",
    "TRN*2*BATCH-837-0001~",
    "STC*A1:19:PR*20260106*WQ*450~",
    "QTY*90*2~",
    "QTY*AA*2~",
    "AMT*YU*225~",
    "AMT*YY*225~",
    "HL*3*2*19*1~",
    "NM1*85*2*NORTH CLINIC*****XX*1234567893~",
    "TRN*1*0~",
    "REF*TJ*123456789~",
    "QTY*QA*1~",
    "QTY*QC*1~",
    "AMT*YU*150~",
    "AMT*YY*100~",
    "HL*4*3*PT~",
    "NM1*QC*1*DOE*JANE****MI*W000111~",
    "TRN*2*PCN-1001~",
    "STC*A2:20:PR*20260106*WQ*150~",
    "REF*1K*PAYER-CLM-77~",
    "REF*D9*CH-TRACE-1001~",
    "DTP*472*RD8*20260102-20260103~",
    "SVC*HC:97110:GP*100*0****4~",
    "STC*A2:20*20260106*WQ*100~",
    "REF*FJ*LINE-1~",
    "DTP*472*D8*20260102~",
    "SVC*HC:97140:GP*50*0****1~",
    "STC*A2:20*20260106*WQ*50~",
    "REF*FJ*LINE-2~",
    "DTP*472*D8*20260103~",
    "HL*5*3*PT~",
    "NM1*QC*1*ROE*RICHARD****MI*W000222~",
    "TRN*2*PCN-1002~",
    "STC*A7:562:85*20260106*U*100******A7:21:85*A6:187~",
    "STC*A3:21*20260106*U*100~",
    "REF*D9*CH-TRACE-1002~",
    "DTP*472*D8*20260104~",
    "HL*6*2*19*1~",
    "NM1*85*2*SOUTH CLINIC*****XX*1245319599~",
    "TRN*1*0~",
    "HL*7*6*PT~",
    "NM1*QC*1*POE*ANN****MI*W000333~",
    "TRN*2*PCN-2001~",
    "STC*ZZ9:999:PR*20260106*WQ*125~",
    "REF*D9*CH-TRACE-2001~",
    "TRN*2*PCN-2002~",
    "STC*A2:20:PR*20260106*WQ*75~",
    "REF*1K*PAYER-CLM-78~",
    "SVC*HC:97530:GP*75*0****1~",
    "STC*A7:454*20260106*U*75~",
    "REF*FJ*LINE-9~",
    "SE*60*0001~",
]


def _read(*sets: list[str]) -> list[ClaimAckReport]:
    x12 = read_interchanges("".join([*ENVELOPE_HEAD, *[s for one in sets for s in one], *ENVELOPE_TAIL]))
    return [read_277(ts) for ts in x12.transactions]


def test_claims_in_several_branches_with_their_parties_statuses_and_keys() -> None:
    (report,) = _read(CLAIMS)
    assert report.ok, report.errors
    assert (report.control_number, report.reference, report.created) == ("0001", "277CA-0001", date(2026, 1, 6))
    assert [c.patient_control_number for c in report.claims] == ["PCN-1001", "PCN-1002", "PCN-2001", "PCN-2002"]
    assert [c.classification for c in report.claims] == ["accepted", "rejected", "other", "accepted"]

    accepted, rejected, unknown, with_bad_line = report.claims
    assert (accepted.payer_claim_control_number, accepted.clearinghouse_trace) == ("PAYER-CLM-77", "CH-TRACE-1001")
    assert (accepted.service_from, accepted.service_to) == (date(2026, 1, 2), date(2026, 1, 3))
    assert accepted.references == (("1K", "PAYER-CLM-77"), ("D9", "CH-TRACE-1001"))
    assert accepted.payer is not None and accepted.payer.id == "60054"
    assert accepted.receiver is not None and accepted.receiver.id == "TC001"
    assert accepted.provider is not None and accepted.provider.id == "1234567893"
    assert accepted.patient is not None and accepted.patient.id == "W000111"
    (status,) = accepted.statuses
    assert (status.effective_date, status.action, status.amount) == (date(2026, 1, 6), "WQ", Decimal("150"))
    assert status.details[0].category.description == "Acknowledgement/Acceptance into adjudication system"
    assert status.details[0].status.description == "Accepted for processing"
    assert [(line.procedure, line.line_control_number, line.units, line.service_from) for line in accepted.lines] == [
        (("HC", "97110", "GP"), "LINE-1", Decimal("4"), date(2026, 1, 2)),
        (("HC", "97140", "GP"), "LINE-2", Decimal("1"), date(2026, 1, 3)),
    ]
    assert all(line.classification == "accepted" for line in accepted.lines)

    assert rejected.payer_claim_control_number == "" and rejected.clearinghouse_trace == "CH-TRACE-1002"
    assert rejected.provider is not None and rejected.provider.name == "NORTH CLINIC"
    first, second = rejected.statuses
    assert [(d.category.code, d.status.code, d.entity.code if d.entity else None) for d in first.details] == [
        ("A7", "562", "85"), ("A7", "21", "85"), ("A6", "187", None)]
    assert first.details[0].status.description == "Entity's National Provider Identifier (NPI)"
    assert first.details[0].entity is not None and first.details[0].entity.description == "Billing provider"
    assert first.details[2].category.description == "Acknowledgement/Rejected for missing information"
    assert second.details[0].category.description == "Acknowledgement/Returned as unprocessable claim"
    assert rejected.service_from == rejected.service_to == date(2026, 1, 4)

    assert unknown.provider is not None and unknown.provider.name == "SOUTH CLINIC"
    assert unknown.patient is not None and unknown.patient.id == "W000333"
    detail = unknown.statuses[0].details[0]
    assert (detail.category.code, detail.category.description, detail.status.code, detail.status.description) == (
        "ZZ9", None, "999", None)

    assert with_bad_line.patient is unknown.patient  # two claims of one patient
    (line,) = with_bad_line.lines
    assert (line.line_control_number, line.classification) == ("LINE-9", "rejected")
    assert line.statuses[0].details[0].status.description == "Procedure code for services rendered"


def test_statuses_above_the_claims_are_kept_per_level() -> None:
    (report,) = _read(CLAIMS)
    assert [(level.level, level.trace) for level in report.levels] == [
        ("20", "20260106-0001"), ("21", "BATCH-837-0001"), ("19", "0"), ("19", "0")]
    receiver = report.levels[1]
    assert receiver.statuses[0].details[0].category.code == "A1"
    assert receiver.statuses[0].classification == "accepted"
    assert receiver.quantities == (("90", Decimal("2")), ("AA", Decimal("2")))
    assert report.levels[2].amounts == (("YU", Decimal("150")), ("YY", Decimal("100")))
    assert report.levels[0].dates == (("050", date(2026, 1, 6)), ("009", date(2026, 1, 6)))


def test_classification_of_categories() -> None:
    assert [classify_category(c) for c in ("A1", "A2", "A3", "A4", "A6", "A7", "A8", "E0", "P1", "R4", "F1", "QQ")] == [
        "accepted", "accepted", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected", "pending",
        "pending", "other", "other"]


def test_claim_status_summary_is_keyed_by_patient_control_number_and_holds_no_names() -> None:
    (report,) = _read(CLAIMS)
    summaries = claim_status_summary(report)
    assert [(s.patient_control_number, s.outcome, s.claim_response_outcome) for s in summaries] == [
        ("PCN-1001", "accepted", "queued"), ("PCN-1002", "rejected", "error"), ("PCN-2001", "other", None),
        ("PCN-2002", "accepted", "queued")]
    rejected = summaries[1]
    assert [r.code for r in rejected.reasons] == ["A7:562:85", "A7:21:85", "A6:187", "A3:21"]
    assert rejected.reasons[0].text == (
        "Acknowledgement/Rejected for invalid information; Entity's National Provider Identifier (NPI) "
        "(Billing provider)")
    assert summaries[2].reasons[0].text == "category ZZ9; status 999 (Payer)"
    assert summaries[0].effective_date == date(2026, 1, 6)
    assert [(line.line_control_number, line.procedure, line.outcome) for line in summaries[3].lines] == [
        ("LINE-9", "97530", "rejected")]
    assert "DOE" not in repr(summaries) and "W000111" not in repr(summaries)


def test_broken_structure_is_named_and_the_claims_around_it_are_kept() -> None:
    body = [
        "ST*277*0002*005010X214~",
        "TRN*2*EARLY~",
        "HL*1**20*1~",
        "NM1*PR*2*ACME HEALTH PLAN*****PI*60054~",
        "HL*4*3*PT~",
        "STC*A1:19*20260106~",
        "TRN*2*PCN-3001~",
        "STC*A2:20*2026-01-06*WQ*ten~",
        "DTP*472*D8*20261301~",
        "HL*4*1*PT~",
        "TRN*2*PCN-3002~",
        "MSG*FREE TEXT~",
        "SE*13*0002~",
    ]
    (report,) = _read(body)
    found = {(e.rule, e.segment_id, e.position, e.element) for e in report.errors}
    # ISA=1, GS=2, ST=3, TRN=4, HL=5, NM1=6, HL=7, STC=8, TRN=9, STC=10, DTP=11, HL=12, TRN=13, MSG=14
    assert found == {
        ("x12.277.missing-bht", "ST", 3, None),
        ("x12.277.sequence", "TRN", 4, None),
        ("x12.277.hl-parent", "HL", 7, 2),
        ("x12.277.sequence", "STC", 8, None),
        ("x12.277.date", "STC", 10, 2),
        ("x12.277.number", "STC", 10, 4),
        ("x12.277.date", "DTP", 11, 3),
        ("x12.277.hl-id", "HL", 12, 1),
        ("x12.277.unknown-segment", "MSG", 14, None),
        ("x12.277.missing-stc", "TRN", 13, None),
    }
    assert [c.patient_control_number for c in report.claims] == ["PCN-3001", "PCN-3002"]
    assert report.claims[0].classification == "accepted"
    assert report.claims[1].payer is not None and report.claims[1].payer.id == "60054"


def test_a_broken_set_does_not_stop_the_next_one() -> None:
    truncated_count = [*CLAIMS[:-1], "SE*61*0001~"]
    no_se = [s.replace("0001", "0009") for s in CLAIMS[:12]]
    first, second, third = _read(no_se, CLAIMS, truncated_count)
    assert [(e.rule, e.segment_id, e.position) for e in first.errors] == [("x12.missing-se", "ST", 15)]
    assert [c.patient_control_number for c in first.claims] == []
    assert first.levels[1].statuses[0].details[0].category.code == "A1"
    assert second.ok and len(second.claims) == 4
    assert [(e.rule, e.segment_id, e.element) for e in third.errors] == [("x12.se-count", "SE", 1)]
    assert len(third.claims) == 4

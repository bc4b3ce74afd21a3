"""Reading whole acknowledgement files: every TA1, 999 and 277CA, each on its own."""

from __future__ import annotations

from mappings.x12.ack_fhir import transaction_set_summary
from mappings.x12.acks import Unread, read_acknowledgements
from mappings.x12.read277 import ClaimAckReport
from mappings.x12.read999 import AckReport, InterchangeAck

FILE = "\n".join([
    "ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*THERAPYCLINIC  *260107*0900*^*00501*000000301*0*P*:~",
    "TA1*000000046*260106*1700*R*024~",
    "GS*FA*CLEARINGHOUSE*THERAPYCLINIC*20260107*0900*301*X*005010X231A1~",
    "ST*999*0001*005010X231A1~",
    "AK1*HC*1010*005010X222A1~",
    "AK2*837*0001*005010X222A1~",
    "IK3*CLM*12*2300*8~",
    "CTX*CLM01:PCN-4001~",
    "IK4*2*782*1~",
    "IK5*R*5~",
    "AK9*R*1*1*0~",
    "SE*9*0001~",
    "GE*1*301~",
    "GS*HN*CLEARINGHOUSE*THERAPYCLINIC*20260107*0900*302*X*005010X214~",
    "ST*277*0001*005010X214~",
    "BHT*0085*08*277CA-9*20260107*0900*TH~",
    "HL*1**20*1~",
    "NM1*PR*2*ACME HEALTH PLAN*****PI*60054~",
    "HL*2*1*21*1~",
    "NM1*41*2*THERAPY CLINIC*****46*TC001~",
    "HL*3*2*19*1~",
    "NM1*85*2*NORTH CLINIC*****XX*1234567893~",
    "HL*4*3*PT~",
    "NM1*QC*1*DOE*JANE****MI*W000111~",
    "TRN*2*PCN-4002~",
    "STC*A2:20:PR*20260107*WQ*80~",
    "SE*13*0001~",
    "ST*277*0002*005010X212~",
    "BHT*0010*08*X*20260107*0900~",
    "SE*3*0002~",
    "GE*3*302~",
    "IEA*2*000000301~",
])


def test_every_document_is_read_and_dispatched_by_its_kind() -> None:
    documents = read_acknowledgements(FILE)
    assert [type(d).__name__ for d in documents] == ["InterchangeAck", "AckReport", "ClaimAckReport", "Unread",
                                                     "Unread"]
    ta1, ack, claims, other, envelope = documents
    assert isinstance(ta1, InterchangeAck) and not ta1.accepted
    assert ta1.note.description == "Invalid interchange content (e.g. invalid GS segment)"
    assert isinstance(ack, AckReport) and ack.ok and ack.transactions[0].rejected_claims == ("PCN-4001",)
    assert isinstance(claims, ClaimAckReport) and claims.ok
    assert [(c.patient_control_number, c.classification) for c in claims.claims] == [("PCN-4002", "accepted")]
    assert isinstance(other, Unread) and (other.set_id, other.control_number) == ("277", "0002")
    assert [(e.rule, e.segment_id, e.position) for e in other.errors] == [("x12.ack.unsupported", "ST", 28)]
    # the envelope: GE*3 for two sets, IEA*2 for two groups (that one is right)
    assert isinstance(envelope, Unread) and envelope.set_id == ""
    assert [(e.rule, e.segment_id, e.position, e.element) for e in envelope.errors] == [("x12.ge-count", "GE", 31, 1)]


def test_the_999_summary_names_the_rejected_claims_without_the_bad_values() -> None:
    ack = read_acknowledgements(FILE)[1]
    assert isinstance(ack, AckReport)
    (summary,) = transaction_set_summary(ack)
    assert (summary.group_control_number, summary.control_number, summary.accepted, summary.status) == (
        "1010", "0001", False, "R")
    assert summary.rejected_claims == ("PCN-4001",)
    assert summary.reasons == (
        "CLM at 12 (loop 2300): Segment has data element errors; CLM02 Required data element missing",
        "One or more segments in error",
    )


def test_a_file_that_is_not_x12_is_one_unread_document() -> None:
    (document,) = read_acknowledgements("<html>gateway timeout</html>")
    assert isinstance(document, Unread)
    (error,) = document.errors
    assert (error.rule, error.segment_id, error.position) == ("x12.interchange-header", "ISA", 1)


def test_a_truncated_file_keeps_the_complete_sets_before_the_cut() -> None:
    cut = FILE[: FILE.index("STC*A2:20:PR")]
    documents = read_acknowledgements(cut.encode("latin-1"))
    ack, claims = documents[1], documents[2]
    assert isinstance(ack, AckReport) and ack.ok
    assert isinstance(claims, ClaimAckReport)
    assert claims.errors[0].rule == "x12.truncated" and claims.errors[0].segment_id == "TRN"
    assert [c.patient_control_number for c in claims.claims] == ["PCN-4002"]
    assert claims.claims[0].statuses == ()

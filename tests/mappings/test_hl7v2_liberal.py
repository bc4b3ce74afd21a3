"""Liberal intake of HL7 v2 structure (as HAPI and Mirth read real partners' messages): segments out
of place, repeated, unknown to v2.5.1 (PRT from v2.7+) or local (Z) are kept and mapped where they
map, reported as warnings (HL7 100, severity W) that an AA carries in ERR segments; only a required
segment absent from the message is an error."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mappings.hl7v2 import Hl7Error, build_ack, parse, read_ack, read_header, translate
from mappings.hl7v2.structures import MAX_WARNINGS, check_structure

DATA = Path(__file__).parent / "data" / "hl7v2"
NOW = datetime(2024, 3, 6, 12, 0, 0)
CLINIC = "Organization/clinic-1"


def load(case: str) -> str:
    return (DATA / case / "input.hl7").read_bytes().decode()


def lines(case: str) -> list[str]:
    return load(case).rstrip("\r").split("\r")


def joined(segments: list[str]) -> str:
    return "\r".join(segments) + "\r"


def of_type(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def found(warnings: list[Hl7Error]) -> list[tuple[int, str, str]]:
    return [(w.code, w.severity, str(w.location)) for w in warnings]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("omg_o19_epic_nte_after_dg1", [(100, "W", "PRT^1"), (100, "W", "NTE^1"), (100, "W", "NTE^2")]),
        ("ref_i12_cerner_repeated", [(100, "W", "NTE^1"), (100, "W", "PV1^2")]),
        ("adt_a08_meditech_local", [(100, "W", "PD1^1")]),
        ("ref_i12_basic", []),
        ("omg_o19_360x", []),
    ],
)
def test_other_systems_messages_are_taken_with_warnings(case: str, expected: list) -> None:
    assert found(translate(load(case), clinic_ref=CLINIC, now=NOW).warnings) == expected


def test_the_order_note_after_its_dg1_becomes_a_service_request_note() -> None:
    translation = translate(load("omg_o19_epic_nte_after_dg1"), clinic_ref=CLINIC, now=NOW)
    [request] = of_type(translation.bundle, "ServiceRequest")
    assert [n["text"] for n in request["note"]] == [
        "S/p R TKA 04/30. WBAT. Eval and treat 2-3x/week.",
        "Please fax the evaluation to the surgeon's office.",
    ]
    # the v2.8 PRT (ordering provider, ORC-12 empty) is the referrer, with its telecom and organisation
    [role] = of_type(translation.bundle, "PractitionerRole")
    assert role["identifier"][0]["value"] == "1245319599"
    assert {t["system"]: t["value"] for t in role["telecom"]} == {
        "fax": "404-555-0190",
        "email": "abara@direct.northside.example",
    }
    assert "Northside Orthopedics" in role["code"][0]["text"]


def test_the_nte_after_dg1_alone_was_the_refusal_of_the_issue() -> None:
    """The 360X golden OMG with its order note moved after a DG1: AE 100 before, now AA + warning."""
    segments = lines("omg_o19_360x")
    obr = next(i for i, s in enumerate(segments) if s.startswith("OBR"))
    nte = segments.pop(next(i for i, s in enumerate(segments) if s.startswith("NTE")))
    segments.insert(obr + 1, "DG1|1||M25.511^Pain in right shoulder^I10C")
    segments.insert(obr + 2, nte)
    translation = translate(joined(segments), clinic_ref=CLINIC, now=NOW)
    [request] = of_type(translation.bundle, "ServiceRequest")
    assert request["note"] == [{"text": "Post-op shoulder rehab, 2x/week"}]
    assert len(request["reasonReference"]) == 2
    assert found(translation.warnings) == [(100, "W", "NTE^1")]


def test_z_segments_anywhere_give_no_warning() -> None:
    segments = lines("ref_i12_basic")
    segments.insert(2, "ZRF|local|1")
    segments.insert(5, "ZPV||")
    segments.append("ZZZ|end")
    translation = translate(joined(segments), clinic_ref=CLINIC, now=NOW)
    assert translation.warnings == []
    assert translation.bundle == translate(load("ref_i12_basic"), clinic_ref=CLINIC, now=NOW).bundle


def test_trailing_empty_fields_and_components_change_nothing() -> None:
    plain = translate(load("ref_i12_basic"), clinic_ref=CLINIC, now=NOW)
    padded = joined([s + "|||" if not s.startswith("MSH") else s for s in lines("ref_i12_basic")])
    translation = translate(padded, clinic_ref=CLINIC, now=NOW)
    assert translation.bundle == plain.bundle and translation.warnings == []


def test_missing_required_content_is_still_an_error() -> None:
    without_pid = joined([s for s in lines("omg_o19_epic_nte_after_dg1") if not s.startswith("PID")])
    with pytest.raises(Hl7Error) as info:
        translate(without_pid, clinic_ref=CLINIC, now=NOW)
    # OMG's PID group is optional in the structure; a referral needs the patient
    assert (info.value.code, info.value.severity, str(info.value.location)) == (100, "E", "PID^1")
    without_obr = joined([s for s in lines("omg_o19_epic_nte_after_dg1") if not s.startswith("OBR")])
    with pytest.raises(Hl7Error) as info:
        translate(without_obr, clinic_ref=CLINIC, now=NOW)
    assert (info.value.code, str(info.value.location), info.value.ack_code) == (100, "OBR^1", "AE")
    without_field = load("omg_o19_epic_nte_after_dg1").replace("|E4481207^^^NORTHSIDE_HOSP^MR~", "|")
    without_field = without_field.replace("999887777^^^SSA^SS", "")
    with pytest.raises(Hl7Error) as info:
        translate(without_field, clinic_ref=CLINIC, now=NOW)
    assert (info.value.code, str(info.value.location)) == (101, "PID^1^3")


def test_a_required_segment_out_of_place_counts_where_it_is_needed() -> None:
    # REF_I12: PID after DG1 and PV1 (legacy order); every resource is the same as in the basic case
    segments = lines("ref_i12_basic")
    pid = segments.pop(next(i for i, s in enumerate(segments) if s.startswith("PID")))
    segments.insert(len(segments) - 1, pid)
    translation = translate(joined(segments), clinic_ref=CLINIC, now=NOW)
    assert translation.bundle == translate(load("ref_i12_basic"), clinic_ref=CLINIC, now=NOW).bundle
    assert found(translation.warnings) == [(100, "W", "PID^1")]


def test_fewest_changes_name_the_misplaced_segment_not_everything_after_it() -> None:
    # one NTE right after PID: a greedy reading would place it last and call IN1, DG1... misplaced
    names = ["MSH", "RF1", "PRD", "PID", "NTE", "IN1", "DG1", "DG1", "OBX", "PV1", "NTE"]
    assert found(check_structure("REF_I12", names)) == [(100, "W", "NTE^1")]


def test_strict_readers_keep_refusing() -> None:
    with pytest.raises(Hl7Error) as info:
        check_structure("REF_I12", ["MSH", "PID", "RF1", "PRD", "DG1"], strict=True)
    assert (info.value.code, info.value.severity, str(info.value.location)) == (100, "E", "PID^1")
    with pytest.raises(Hl7Error):
        check_structure("OMG_O19", ["MSH", "PID", "ORC", "PRT", "OBR"], strict=True)


def test_warnings_are_capped_and_quote_no_content() -> None:
    secret = "Zyxwvut-Secret"
    segments = lines("ref_i12_basic")
    pid = next(i for i, s in enumerate(segments) if s.startswith("PID"))
    segments[pid + 1 : pid + 1] = [f"PID|{n}||X-{n}^^^ORTHO_CLINIC^MR||{secret}^Jane" for n in range(2, 42)]
    translation = translate(joined(segments), clinic_ref=CLINIC, now=NOW)
    assert len(translation.warnings) == MAX_WARNINGS
    assert all(secret not in str(w) for w in translation.warnings)


def test_an_aa_carries_the_warnings_as_err_segments_of_severity_w() -> None:
    message = parse(load("omg_o19_epic_nte_after_dg1"))
    header = read_header(message)
    warnings = translate(message, clinic_ref=CLINIC, now=NOW).warnings
    text = build_ack(header, "AA", control_id="ACK1", now=NOW, warnings=warnings)
    ack = parse(text)
    assert ack.first("MSA").get(1) == "AA"
    errs = ack.all("ERR")
    assert [(e.get(3, 1, 1), e.get(3, 1, 3), e.get(4)) for e in errs] == [("100", "HL70357", "W")] * 3
    assert ["^".join(c for c in e.components(2) if c) for e in errs] == ["PRT^1", "NTE^1", "NTE^2"]
    result = read_ack(ack)
    assert result.accepted and result.error_code == "100"

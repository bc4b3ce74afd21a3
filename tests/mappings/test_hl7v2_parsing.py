"""HL7 v2 inbound mappings: parsing (delimiters, escapes, repetitions, unicode, line endings),
structure and field checks with HL7 error codes and locations, golden files per message type."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from mappings.fhir.ids import deterministic_id
from mappings.fhir.validation import validate_resource
from mappings.hl7v2 import Hl7Error, parse, translate, unescape
from mappings.hl7v2.syntax import Separators, escape

DATA = Path(__file__).parent / "data" / "hl7v2"
NOW = datetime(2024, 3, 6, 12, 0, 0)
CLINIC = "Organization/clinic-1"


def load(case: str) -> bytes:
    return (DATA / case / "input.hl7").read_bytes()


def ref(**replace: str) -> bytes:
    """The basic REF^I12 with some segments replaced (``PID="PID|..."``) or removed (``PID=""``)."""
    lines = load("ref_i12_basic").decode().rstrip("\r").split("\r")
    out = []
    for line in lines:
        name = line[:3]
        if name in replace:
            if replace[name]:
                out.append(replace[name])
            continue
        out.append(line)
    return ("\r".join(out) + "\r").encode()


def run(raw: bytes | str) -> dict:
    return translate(raw, clinic_ref=CLINIC, now=NOW).bundle


def resources(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def error_of(raw: bytes | str, **kwargs: str) -> Hl7Error:
    with pytest.raises(Hl7Error) as info:
        translate(raw, clinic_ref=CLINIC, now=NOW, **kwargs)
    return info.value


# ----------------------------------------------------------------------------------- golden files


@pytest.mark.parametrize(
    "case",
    [
        "ref_i12_basic",
        "omg_o19_360x",
        "adt_a04",
        # written the way other systems write them (test_hl7v2_liberal.py: the warnings)
        "omg_o19_epic_nte_after_dg1",
        "ref_i12_cerner_repeated",
        "adt_a08_meditech_local",
        "ref_i12_v27_athena",  # MSH-12 2.7, read as 2.5.1 (test_hl7v2_liberal_intake.py: the warning)
    ],
)
def test_golden(case: str) -> None:
    bundle = run(load(case))
    assert bundle == json.loads((DATA / case / "expected.json").read_text())
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "PUT"
        assert entry["request"]["url"] == f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
        problems = [i for i in validate_resource(entry["resource"]) if i.severity in ("error", "fatal")]
        assert problems == []


def test_ref_i12_fields() -> None:
    bundle = run(load("ref_i12_basic"))
    [sr] = resources(bundle, "ServiceRequest")
    assert sr["category"][0]["coding"][0]["code"] == "91251008"  # PT from RF1-3
    assert sr["identifier"] == [
        {"system": "https://therapy-hub.example/sid/hl7v2/ORTHO_CLINIC", "value": "REF-7781"}
    ]
    assert sr["note"] == [{"text": "Evaluate and treat\n3x/week for 4 weeks | home program"}]
    assert len(sr["reasonReference"]) == 2
    [patient] = resources(bundle, "Patient")
    assert patient["name"][0] == {"family": "Gonçalves", "given": ["Zoë", "Marie"]}
    # the SSN repetition of PID-3 is not imported
    assert [i["value"] for i in patient["identifier"]] == ["MRN-1001"]
    [role] = resources(bundle, "PractitionerRole")
    assert role["identifier"][0]["value"] == "1234567893"
    assert {t["system"] for t in role["telecom"]} == {"email", "fax"}
    [coverage] = resources(bundle, "Coverage")
    assert coverage["payor"][0]["display"] == "Blue Cross & Blue Shield"  # \T\ unescaped
    assert [c["code"]["coding"][0]["code"] for c in resources(bundle, "Condition")] == ["M54.16", "M51.26"]
    [document] = resources(bundle, "DocumentReference")
    assert document["content"][0]["attachment"]["contentType"] == "application/pdf"


def test_resending_gives_the_same_ids_and_the_patient_id_space_is_shared() -> None:
    first, again = run(load("ref_i12_basic")), run(load("ref_i12_basic"))
    assert [e["fullUrl"] for e in first["entry"]] == [e["fullUrl"] for e in again["entry"]]
    [patient] = resources(first, "Patient")
    assert patient["id"] == deterministic_id("Patient", patient["identifier"][0]["system"], "MRN-1001")
    [adt_patient] = resources(run(load("adt_a04")), "Patient")
    assert adt_patient["id"] == patient["id"]  # an ADT for the same MRN updates the referral's Patient


@pytest.mark.parametrize("event", ["A04", "A08", "A31"])
def test_adt_events(event: str) -> None:
    raw = load("adt_a04").replace(b"ADT^A04^ADT_A01", f"ADT^{event}^ADT_A01".encode())
    [patient] = resources(run(raw), "Patient")
    assert patient["birthDate"] == "1980"  # partial dates are kept as given
    assert patient["identifier"][1] == {"system": "urn:oid:2.16.840.1.113883.3.72", "value": "A-77"}


def test_omg_o19_360x() -> None:
    bundle = run(load("omg_o19_360x"))
    [sr] = resources(bundle, "ServiceRequest")
    assert sr["priority"] == "asap"
    assert sr["category"][0]["text"] == "OT"
    [coverage] = resources(bundle, "Coverage")
    assert coverage["payor"][0]["display"] == "Medicare Part B"  # IN1-3 "MCR" through the insurer table
    [document] = resources(bundle, "DocumentReference")
    assert document["content"][0]["attachment"]["contentType"] == "text/plain"


def test_omg_cancel_revokes_and_two_orders_make_two_referrals() -> None:
    text = load("omg_o19_360x").decode()
    cancel = text.replace("ORC|NW|", "ORC|CA|")
    [sr] = resources(run(cancel), "ServiceRequest")
    assert sr["status"] == "revoked"
    lines = text.rstrip("\r").split("\r")
    second = [
        line.replace("PO-9911", "PO-9912").replace("OT^Occupational", "PT^Physical") for line in lines[3:]
    ]
    bundle = run("\r".join(lines + second) + "\r")
    assert {s["category"][0]["text"] for s in resources(bundle, "ServiceRequest")} == {"OT", "PT"}
    assert len(resources(bundle, "Patient")) == 1


# ---------------------------------------------------------------------------------- encoding rules


def test_other_delimiters_give_the_same_result() -> None:
    # \F\ and \T\ stand for the message's own delimiters: keep them out of the comparison
    text = load("ref_i12_basic").decode().replace("\\T\\", "and").replace("\\F\\", "/")
    table = str.maketrans({"|": "#", "^": "$", "~": "*", "\\": "!", "&": "%"})
    assert run(text.translate(table)) == run(text)


def test_escape_sequences() -> None:
    seps = Separators()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", seps) == "a|b^c&d~e\\f"
    assert unescape("line1\\.br\\line2\\X0D\\\\X0A\\end", seps) == "line1\nline2\r\nend"
    assert unescape(r"\H\bold\N\ text", seps) == "bold text"
    assert unescape("caf\\XC3A9\\", seps) == "café"
    assert escape("a|b^c&d~e\\f\nx", seps) == r"a\F\b\S\c\T\d\R\e\E\f\X0A\x"
    assert escape("a\nb", seps, formatted=True) == r"a\.br\b"


def test_bad_escape_sequence_is_a_data_type_error_with_its_location() -> None:
    error = error_of(ref(NTE="NTE|1|L|broken \\Q\\ escape"))
    assert (error.code, str(error.location)) == (102, "NTE^1^3^1^1^1")
    error = error_of(ref(NTE="NTE|1|L|unterminated \\F"))
    assert error.code == 102


def test_repetitions_and_unicode() -> None:
    raw = ref(
        PID="PID|1||MRN-1001^^^ORTHO_CLINIC^MR~X9^^^OTHER^PI||Ωmega^Ünïcødé 漢字||19800214|F|||"
        "||555-0199^PRN^PH~555-0198^ORN^CP"
    )
    [patient] = resources(run(raw), "Patient")
    assert patient["name"][0] == {"family": "Ωmega", "given": ["Ünïcødé 漢字"]}
    assert [i["value"] for i in patient["identifier"]] == ["MRN-1001", "X9"]
    assert [t.get("use") for t in patient["telecom"]] == ["home", "mobile"]


def test_lf_and_crlf_line_endings_are_normalised_or_refused() -> None:
    raw = load("ref_i12_basic")
    expected = run(raw)
    assert run(raw.replace(b"\r", b"\n")) == expected
    assert run(raw.replace(b"\r", b"\r\n")) == expected
    error = error_of(raw.replace(b"\r", b"\n"), line_endings="reject")
    assert error.code == 102 and "line feeds" in error.text and error.ack_code == "AE"


def test_character_sets() -> None:
    latin = (
        ref(
            MSH="MSH|^~\\&|REFAPP|ORTHO_CLINIC|THERAPY_HUB|REHAB|20240305101500||REF^I12^REF_I12|MSG00001|P|"
            "2.5.1||||||8859/1"
        )
        .decode()
        .encode("latin-1")
    )
    [patient] = resources(run(latin), "Patient")
    assert patient["name"][0]["family"] == "Gonçalves"
    error = error_of(latin.replace(b"|8859/1", b""))  # latin-1 bytes declared (by default) as UTF-8
    assert (error.code, str(error.location)) == (102, "MSH^1^18")
    error = error_of(latin.replace(b"|8859/1", b"|ISO IR87"))
    assert (error.code, str(error.location)) == (103, "MSH^1^18")


# --------------------------------------------------------------------------------- errors (codes)

MSH_251 = "MSH|^~\\&|REFAPP|ORTHO_CLINIC|THERAPY_HUB|REHAB|20240305101500||{type}|MSG00001|P|{version}"


@pytest.mark.parametrize(
    ("raw", "code", "location", "ack"),
    [
        (ref(MSH=MSH_251.format(type="REF^I12", version="2.3")), 203, "MSH^1^12", "AR"),
        (ref(MSH=MSH_251.format(type="ORU^R01", version="2.5.1")), 200, "MSH^1^9^1^1", "AR"),
        (ref(MSH=MSH_251.format(type="ADT^A01", version="2.5.1")), 201, "MSH^1^9^1^2", "AR"),
        (
            ref(MSH=MSH_251.format(type="REF^I12", version="2.5.1").replace("|P|", "|X|")),
            202,
            "MSH^1^11",
            "AR",
        ),
        (
            ref(MSH=MSH_251.format(type="REF^I12", version="2.5.1").replace("|MSG00001|", "||")),
            101,
            "MSH^1^10",
            "AE",
        ),
        (ref(PID=""), 100, "PID^1", "AE"),
        (ref(PRD=""), 100, "PRD^1", "AE"),
        (ref(DG1=""), 100, "DG1^1", "AE"),
        (ref(RF1="RF1|P||PT"), 101, "RF1^1^6", "AE"),
        (ref(RF1="RF1|P|R|XRAY^Imaging^L||O|REF-7781^ORTHO_CLINIC"), 103, "RF1^1^3^1^1", "AE"),
        (ref(RF1="RF1|P|Z|PT||O|REF-7781^ORTHO_CLINIC"), 103, "RF1^1^2^1^1", "AE"),
        (ref(PID="PID|1||MRN-1001^^^ORTHO_CLINIC^MR||Doe^Jane||1980021|F"), 102, "PID^1^7", "AE"),
        (ref(PID="PID|1||MRN-1001^^^ORTHO_CLINIC^MR||Doe^Jane||19800214|Q"), 103, "PID^1^8", "AE"),
        (ref(PID="PID|1||||Doe^Jane||19800214|F"), 101, "PID^1^3", "AE"),
        (ref(PRD="PRD|RP|Mendes^Ana"), 101, "PRD^1^7", "AE"),
        (ref(PRD="PRD|RP|Mendes^Ana|||||12345^NPI"), 102, "PRD^1^7^1^1", "AE"),
        (ref(DG1="DG1|1||M54.16^Radiculopathy^I9C"), 103, "DG1^1^3^1^3", "AE"),
        (ref(DG1="DG1|1||54.16^Radiculopathy^I10C"), 102, "DG1^1^3^1^1", "AE"),
        (ref(OBX="OBX|1|ED|X^Doc^L||^AP^PDF^Base64^not*base64||||||F"), 102, "OBX^1^5^1^5", "AE"),
        (ref(OBX="OBX|1|ED|X^Doc^L||^AP^WAV^Base64^AAAA||||||F"), 103, "OBX^1^5^1^3", "AE"),
        (ref(IN1="IN1|1||BCBS|Blue Cross"), 101, "IN1^1^36", "AE"),
    ],
)
def test_errors_have_hl7_codes_and_locations(raw: bytes, code: int, location: str, ack: str) -> None:
    error = error_of(raw)
    assert (error.code, str(error.location), error.ack_code) == (code, location, ack)


def test_structure_errors() -> None:
    text = load("ref_i12_basic").decode().rstrip("\r").split("\r")
    swapped = [text[0], text[3], text[1], text[2], *text[4:]]  # PID before RF1 and PRD: kept, a warning
    translation = translate("\r".join(swapped), clinic_ref=CLINIC, now=NOW)
    assert translation.bundle == run(load("ref_i12_basic"))
    [warning] = translation.warnings
    assert (warning.code, warning.severity, str(warning.location)) == (100, "W", "PID^1")
    # an unknown segment is kept too; a required segment absent from the message is an error
    [unknown] = translate(ref(PV1="XYZ|1"), clinic_ref=CLINIC, now=NOW).warnings
    assert (unknown.code, unknown.severity, str(unknown.location)) == (100, "W", "XYZ^1")
    assert str(error_of(ref(PRD="")).location) == "PRD^1"
    assert error_of("MSH|^~\\&|A|B|C|D|2024||REF^I12|1|P|2.5.1\rPID|1\rMSH|^~\\&|x\r").location.sequence == 2
    assert error_of("PID|1||x\r").code == 100
    # Z-segments are allowed anywhere
    assert run(ref(PV1="PV1|1|O\rZRF|local|stuff"))


def test_errors_never_quote_the_message_content() -> None:
    secret = "Zyxwvut-Secret"
    cases = [
        ref(PID=f"PID|1||MRN-1001^^^ORTHO_CLINIC^MR||{secret}^Jane||1980-02-14|F"),
        ref(PID=f"PID|1||MRN-1001^^^ORTHO_CLINIC^MR||Doe^Jane||19800214|{secret}"),
        ref(NTE=f"NTE|1|L|{secret} \\Q\\"),
        ref(RF1=f"RF1|P|R|{secret}||O|REF-1^X"),
    ]
    for raw in cases:
        error = error_of(raw)
        assert secret not in str(error) and secret not in repr(error.args)


def test_parse_accessors() -> None:
    message = parse(load("ref_i12_basic"))
    assert message.names == ["MSH", "RF1", "PRD", "PID", "IN1", "DG1", "DG1", "OBX", "PV1", "NTE"]
    msh = message.msh
    assert (msh.get(1), msh.get(2), msh.get(9, 1, 2), msh.get(12)) == ("|", "^~\\&", "I12", "2.5.1")
    pid = message.first("PID")
    assert pid is not None and pid.count(3) == 2 and list(pid.repetitions(3)) == [1, 2]
    assert pid.components(5) == ["Gonçalves", "Zoë", "Marie"]
    assert message.all("DG1")[1].sequence == 2


def test_a_status_update_is_not_translated_into_resources() -> None:
    """RRI^I12 / OSU^O51 change a Task (hub.inbound.hl7v2); translate() refuses them instead of
    turning the PID into a Patient write."""
    from mappings.hl7v2 import Hl7Error, translate

    raw = (
        "MSH|^~\\&|EMR|CLINIC|HUB|HUB|20240301101500||OSU^O51^OSU_O51|C1|P|2.5.1\r"
        "ORC|SC|REF-1^CLINIC||||||||20240301101500"
    )
    with pytest.raises(Hl7Error) as caught:
        translate(raw, clinic_ref="Organization/clinic", now=datetime(2024, 3, 1))
    assert caught.value.code == 200 and "read_status_update" in str(caught.value)


def test_a_bundle_resolves_relative_and_full_url_references_but_not_another_servers() -> None:
    from mappings.hl7v2.segments import Context

    ours = {"resourceType": "Patient", "id": "5", "name": [{"family": "Local"}]}
    context = Context({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://hub.example/fhir/Patient/5", "resource": ours}]})
    assert context.get({"reference": "Patient/5"}) is ours
    assert context.get({"reference": "Patient/5/_history/2"}) is ours
    assert context.get({"reference": "http://hub.example/fhir/Patient/5"}) is ours
    assert context.get({"reference": "https://other-emr.example/fhir/Patient/5"}) is None
    assert context.get({"reference": "Patient"}) is None

"""Resources come back exactly as sent (apart from id and meta.versionId/lastUpdated) from every
read path: create response, read, vread, search, history and transaction responses."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
EXT = "http://example.org/fhir/StructureDefinition"

DIV = (
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>Knee flexion <b>1.50</b> rad &amp; pain 0.10 &#8212; '
    "Zo\u00eb M\u00fcller-\u5c71\u7530 \U0001f600</p></div>"
)

# JSON text, not a dict: the decimals must travel exactly as written
OBSERVATION_JSON = """{
  "resourceType": "Observation",
  "meta": {
    "profile": ["http://example.org/fhir/StructureDefinition/rehab-rom"],
    "tag": [{"system": "http://example.org/tags", "code": "pilot", "display": "Pilot clinic"}],
    "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]
  },
  "text": {
    "status": "generated",
    "div": "__DIV__"
  },
  "contained": [
    {
      "resourceType": "Practitioner",
      "id": "pt1",
      "name": [
        {
          "family": "Ng\\u00f4",
          "given": ["Th\\u1ecb", null],
          "_given": [
            null,
            {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier",
                            "valueCode": "CL"}]}
          ]
        }
      ]
    }
  ],
  "extension": [
    {
      "url": "http://example.org/fhir/StructureDefinition/measurement-context",
      "extension": [
        {"url": "position", "valueString": "supine \\u2014 90\\u00b0 hip"},
        {"url": "repeat", "valueInteger": 3},
        {"url": "weight", "valueDecimal": 100.000},
        {"url": "scale", "valueDecimal": 1e2},
        {"url": "nested", "extension": [{"url": "deep", "valueBoolean": false}]}
      ]
    }
  ],
  "status": "final",
  "_status": {
    "id": "status-1",
    "extension": [{"url": "http://example.org/fhir/StructureDefinition/status-source", "valueCode": "device"}]
  },
  "category": [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "exam"}]}
  ],
  "code": {
    "coding": [{"system": "http://loinc.org", "code": "41350-6", "display": "Knee flexion"}],
    "text": "Knee flexion"
  },
  "subject": {"reference": "Patient/p1", "display": "Jos\\u00e9 \\u00c5ngstr\\u00f6m"},
  "performer": [{"reference": "#pt1"}],
  "effectiveDateTime": "2024-03-01T10:15:00.120+01:00",
  "valueQuantity": {"value": 1.50, "unit": "rad", "system": "http://unitsofmeasure.org", "code": "rad"},
  "referenceRange": [{"low": {"value": 0.10}, "high": {"value": 100.000}, "text": "0.10 \\u2013 100.000"}],
  "component": [
    {"code": {"text": "tiny"}, "valueQuantity": {"value": 0.000010}},
    {"code": {"text": "negative"}, "valueQuantity": {"value": -2.50}},
    {"code": {"text": "big"}, "valueQuantity": {"value": 12345678901234567890.123456789}},
    {"code": {"text": "exponent"}, "valueQuantity": {"value": 1.5e-7}}
  ],
  "note": [{"text": "Line one\\nLine \\"two\\"\\ttabbed \\\\ backslash </script>"}]
}""".replace('"__DIV__"', json.dumps(DIV))  # escaped as \uXXXX, the emoji as a surrogate pair

DIGITS = ["1.50", "0.10", "100.000", "0.000010", "-2.50", "12345678901234567890.123456789"]


def parse(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def canonical(value: Any) -> Any:
    """Decimals by their exact digits and exponent (Decimal("1.50") == Decimal("1.5"), but not here)."""
    if isinstance(value, Decimal):
        return ("decimal", value.as_tuple())
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def as_sent(resource: dict) -> Any:
    """What must come back: the resource minus id and the server-owned meta elements."""
    out = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return canonical(out)


def assert_same(returned: dict, sent: dict, *, rid: str | None = None, version: str | None = None) -> None:
    if rid is not None:
        assert returned["id"] == rid
    if version is not None:
        assert returned["meta"]["versionId"] == version
    assert returned["meta"]["lastUpdated"]
    assert as_sent(returned) == as_sent(sent)


def post_text(client: TestClient, resource_type: str, text: str):
    return client.post(f"/fhir/{resource_type}", content=text.encode("utf-8"), headers=FHIR)


def test_the_fixture_is_what_we_think() -> None:
    sent = parse(OBSERVATION_JSON)
    assert str(sent["valueQuantity"]["value"]) == "1.50"
    assert str(sent["extension"][0]["extension"][3]["valueDecimal"]) == "1E+2"
    assert isinstance(sent["extension"][0]["extension"][1]["valueInteger"], int)


def test_create_and_read_paths_return_the_resource_as_sent(client: TestClient) -> None:
    sent = parse(OBSERVATION_JSON)
    created = post_text(client, "Observation", OBSERVATION_JSON)
    assert created.status_code == 201, created.text
    rid = parse(created.content)["id"]
    responses = {
        "create": created,
        "read": client.get(f"/fhir/Observation/{rid}"),
        "vread": client.get(f"/fhir/Observation/{rid}/_history/1"),
    }
    for label, response in responses.items():
        assert response.status_code == 200 or label == "create", (label, response.text)
        text = response.content.decode("utf-8")
        for digits in DIGITS:
            assert digits in text, (label, digits)
        assert "Zoë Müller-山田 😀" in text, label  # unicode kept as characters, also outside the BMP
        # exponent forms keep digits and exponent (simplejson writes Decimal("1e2") as 1E+2)
        assert "1e2" in text or "1E+2" in text, label
        assert "1.5e-7" in text or "1.5E-7" in text, label
        assert_same(parse(response.content), sent, rid=rid, version="1")

    search = client.get("/fhir/Observation", params={"_id": rid})
    assert search.status_code == 200
    for digits in DIGITS:
        assert digits in search.text
    entries = parse(search.content)["entry"]
    assert len(entries) == 1
    assert_same(entries[0]["resource"], sent, rid=rid, version="1")

    for path in (f"/fhir/Observation/{rid}/_history", "/fhir/Observation/_history", "/fhir/_history"):
        history = client.get(path)
        assert history.status_code == 200, (path, history.text)
        assert "1.50" in history.text and "100.000" in history.text
        resources = [
            e["resource"] for e in parse(history.content)["entry"] if e.get("resource", {}).get("id") == rid
        ]
        assert len(resources) == 1, path
        assert_same(resources[0], sent, rid=rid, version="1")


def test_update_keeps_the_new_content_exactly_and_history_keeps_the_old(client: TestClient) -> None:
    sent = parse(OBSERVATION_JSON)
    rid = parse(post_text(client, "Observation", OBSERVATION_JSON).content)["id"]
    changed = OBSERVATION_JSON.replace('"value": 1.50,', '"value": 2.500,').replace(
        '"resourceType": "Observation",', f'"resourceType": "Observation", "id": "{rid}",', 1
    )
    updated = client.put(f"/fhir/Observation/{rid}", content=changed.encode(), headers=FHIR)
    assert updated.status_code == 200, updated.text
    assert "2.500" in updated.text
    new = parse(changed)
    assert_same(parse(updated.content), new, rid=rid, version="2")
    assert_same(parse(client.get(f"/fhir/Observation/{rid}").content), new, rid=rid, version="2")
    assert_same(parse(client.get(f"/fhir/Observation/{rid}/_history/1").content), sent, rid=rid, version="1")
    history = parse(client.get(f"/fhir/Observation/{rid}/_history").content)["entry"]
    assert [e["resource"]["meta"]["versionId"] for e in history] == ["2", "1"]
    assert_same(history[0]["resource"], new)
    assert_same(history[1]["resource"], sent)


def test_transaction_and_batch_responses_return_the_resource_as_sent(client: TestClient) -> None:
    sent = parse(OBSERVATION_JSON)
    for kind in ("transaction", "batch"):
        bundle_text = (
            '{"resourceType": "Bundle", "type": "'
            + kind
            + '", "entry": [{"fullUrl": "urn:uuid:9e0b7c0e-1d7e-4c1c'
            '-9a42-6f1f0c5b1a11", "request": {"method": "POST", "url": "Observation"}, "resource": '
            + OBSERVATION_JSON
            + "}]}"
        )
        response = client.post("/fhir", content=bundle_text.encode(), headers=FHIR)
        assert response.status_code == 200, response.text
        for digits in DIGITS:
            assert digits in response.text, (kind, digits)
        entry = parse(response.content)["entry"][0]
        rid = entry["response"]["location"].split("/")[1]
        assert_same(entry["resource"], sent, rid=rid, version="1")
        assert_same(parse(client.get(f"/fhir/Observation/{rid}").content), sent, rid=rid, version="1")


def test_client_meta_is_kept_and_server_meta_replaced(client: TestClient) -> None:
    sent = parse(OBSERVATION_JSON)
    text = OBSERVATION_JSON.replace(
        '"meta": {',
        '"meta": {"versionId": "42", "lastUpdated": "1999-12-31T23:59:59Z", "source": "urn:example:emr",',
        1,
    )
    created = post_text(client, "Observation", text)
    assert created.status_code == 201, created.text
    body = parse(created.content)
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "1999-12-31T23:59:59Z"
    assert body["meta"]["source"] == "urn:example:emr"
    assert body["meta"]["profile"] == sent["meta"]["profile"]
    assert body["meta"]["tag"] == sent["meta"]["tag"]
    assert body["meta"]["security"] == sent["meta"]["security"]
    read = parse(client.get(f"/fhir/Observation/{body['id']}").content)
    assert read["meta"] == body["meta"]


def test_patient_with_unicode_and_primitive_extensions(client: TestClient) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {"use": "official", "family": "Ødegård-Nuñez", "given": ["Zoë", "Ĳsbrand"]},
            {"use": "usual", "text": "山田 太郎"},
            {"family": "Ковалёва", "given": ["Анна"]},
            {"family": "عبد الله", "_family": {"extension": [{"url": f"{EXT}/script", "valueCode": "Arab"}]}},
        ],
        "birthDate": "1980-02-29",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1980-02-29T03:15:00+09:00",
                }
            ]
        },
        "gender": "female",
        "active": False,
        "multipleBirthInteger": 2,
        "address": [{"line": ["Straße 1", 'c/o "Ünal"'], "city": "Zürich", "country": "CH"}],
    }
    text = json.dumps(patient, ensure_ascii=False)
    created = post_text(client, "Patient", text)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    read = client.get(f"/fhir/Patient/{rid}")
    assert "Ødegård-Nuñez" in read.content.decode("utf-8")
    assert_same(parse(read.content), patient, rid=rid)
    # the same resource sent \\u-escaped (ASCII) is stored identically
    escaped = post_text(client, "Patient", json.dumps(patient, ensure_ascii=True))
    assert escaped.status_code == 201
    assert_same(parse(client.get(f"/fhir/Patient/{escaped.json()['id']}").content), patient)


def test_the_sent_object_is_not_reordered_beyond_id_and_meta(client: TestClient) -> None:
    sent = parse(OBSERVATION_JSON)
    body = parse(post_text(client, "Observation", OBSERVATION_JSON).content)
    assert list(body)[:3] == ["resourceType", "id", "meta"]
    assert [k for k in body if k not in ("id", "meta")] == [k for k in sent if k != "meta"]

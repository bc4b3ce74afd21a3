"""Errors on /fhir: every one an OperationOutcome with severity, code and (where an element is at
fault) a FHIRPath expression; no 500s for client mistakes; no submitted values echoed back."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}
NAME = "Xanthippe Quillfeather-Ombudsman"  # distinctive: must never appear in an error body


def referral(**extra) -> dict:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    resource.update(extra)
    return {k: v for k, v in resource.items() if v is not None}


def post(client: TestClient, path: str, body, **headers):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, content=content, headers={**FHIR, **headers})


def outcome(response, status: int) -> list[dict]:
    """The issues of an OperationOutcome error response (checked for shape)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"]
    for issue in body["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert isinstance(issue["code"], str) and issue["code"]
        assert isinstance(issue.get("diagnostics", ""), str)
    assert any(i["severity"] in ("fatal", "error") for i in body["issue"])
    return body["issue"]


def expressions(issues: list[dict]) -> list[str]:
    return [e for i in issues for e in i.get("expression", [])]


def stored(client: TestClient, resource_type: str = "ServiceRequest") -> int:
    return client.get(f"/fhir/{resource_type}", params={"_summary": "count"}).json()["total"]


# ------------------------------------------------------------------ request format


def test_invalid_json(client: TestClient) -> None:
    for body in ('{"resourceType": "ServiceRequest", ', "{'single': 'quotes'}", "not json", '{"a": NaN}'):
        issues = outcome(post(client, "/fhir/ServiceRequest", body), 400)
        assert issues[0]["code"] in ("invalid", "structure")
    assert stored(client) == 0


def test_invalid_json_message_does_not_echo_the_body(client: TestClient) -> None:
    body = '{"resourceType": "Patient", "name": [{"family": "' + NAME + '"}]'  # unterminated
    response = post(client, "/fhir/Patient", body)
    outcome(response, 400)
    assert NAME not in response.text


def test_body_that_is_not_utf8(client: TestClient) -> None:
    body = json.dumps(referral(note=[{"text": "caf\u00e9"}]), ensure_ascii=False).encode("latin-1")
    assert b"caf\xe9" in body
    outcome(post(client, "/fhir/ServiceRequest", body), 400)


def test_numbers_too_long_for_python_are_a_400_not_a_500(client: TestClient) -> None:
    digits = "9" * 5000  # int() refuses more than 4300 digits
    head = '{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
    issues = outcome(post(client, "/fhir/Observation", head + '"valueInteger": ' + digits + "}"), 400)
    assert expressions(issues) == ["Observation.valueInteger"]
    # in a decimal the digits are fine, and kept
    created = post(client, "/fhir/Observation", head + '"valueQuantity": {"value": ' + digits + "}}")
    assert created.status_code == 201, created.text[:300]
    rid = created.headers["location"].split("/")[-3]
    assert digits in client.get(f"/fhir/Observation/{rid}").text


def test_empty_body(client: TestClient) -> None:
    outcome(post(client, "/fhir/ServiceRequest", ""), 400)
    outcome(client.put("/fhir/ServiceRequest/x", content=b"", headers=FHIR), 400)


def test_json_that_is_not_an_object(client: TestClient) -> None:
    for body in ([referral()], "42", '"ServiceRequest"', "null"):
        issues = outcome(post(client, "/fhir/ServiceRequest", body), 400)
        assert issues[0]["code"] in ("structure", "invalid")
    assert stored(client) == 0


def test_resource_type_must_match_the_url(client: TestClient) -> None:
    issues = outcome(post(client, "/fhir/Patient", referral()), 400)
    assert expressions(issues) == ["resourceType"]
    created = post(client, "/fhir/ServiceRequest", referral()).json()
    issues = outcome(
        client.put(f"/fhir/Task/{created['id']}", content=json.dumps(created), headers=FHIR), 400
    )
    assert expressions(issues) == ["resourceType"]
    issues = outcome(post(client, "/fhir/ServiceRequest", {"status": "active"}), 400)
    assert expressions(issues) == ["resourceType"]
    assert stored(client, "Patient") == 0


def test_resource_type_is_not_echoed(client: TestClient) -> None:
    response = post(client, "/fhir/Patient", {"resourceType": NAME})
    outcome(response, 400)
    assert NAME not in response.text


def test_unknown_resource_type_is_404_not_500(client: TestClient) -> None:
    calls = [
        client.get("/fhir/Foo"),
        client.get("/fhir/Foo/1"),
        client.get("/fhir/Foo/1/_history"),
        client.get("/fhir/Foo/1/_history/1"),
        client.get("/fhir/Foo/_history"),
        post(client, "/fhir/Foo", {"resourceType": "Foo"}),
        client.put("/fhir/Foo/1", content=json.dumps({"resourceType": "Foo", "id": "1"}), headers=FHIR),
        client.delete("/fhir/Foo/1"),
        post(client, "/fhir/Foo/$validate", {"resourceType": "Foo"}),
        # a real FHIR type the hub does not serve
        post(client, "/fhir/Medication", {"resourceType": "Medication"}),
    ]
    for response in calls:
        issues = outcome(response, 404)
        assert issues[0]["code"] in ("not-supported", "not-found")


def test_body_over_the_limit(client: TestClient) -> None:
    big = referral(note=[{"text": "x" * (70 * 1024)}])
    issues = outcome(post(client, "/fhir/ServiceRequest", big), 413)
    assert issues[0]["code"] == "too-costly"
    # without a Content-Length (chunked), the limit holds while reading
    chunks = iter([json.dumps(big).encode()[i : i + 8192] for i in range(0, 80 * 1024, 8192)])
    issues = outcome(client.post("/fhir/ServiceRequest", content=chunks, headers=FHIR), 413)
    assert issues[0]["code"] == "too-costly"
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": big}]}
    outcome(post(client, "/fhir", bundle), 413)
    assert stored(client) == 0


def test_body_just_under_the_limit_is_fine(client: TestClient) -> None:
    text = "x" * (60 * 1024)
    response = post(client, "/fhir/ServiceRequest", referral(note=[{"text": text}]))
    assert response.status_code == 201, response.text[:500]


def test_unsupported_content_type(client: TestClient) -> None:
    for content_type in (
        "application/xml",
        "application/fhir+xml",
        "text/plain",
        "application/x-www-form-urlencoded",
    ):
        response = client.post(
            "/fhir/ServiceRequest", content=json.dumps(referral()), headers={"Content-Type": content_type}
        )
        issues = outcome(response, 415)
        assert issues[0]["code"] == "not-supported"
    outcome(
        client.put("/fhir/ServiceRequest/a", content="<x/>", headers={"Content-Type": "application/xml"}), 415
    )
    outcome(client.post("/fhir", content="<x/>", headers={"Content-Type": "application/xml"}), 415)
    assert stored(client) == 0


def test_xml_only_accept_is_not_acceptable(client: TestClient) -> None:
    xml = {"Accept": "application/fhir+xml"}
    created = post(client, "/fhir/ServiceRequest", referral()).json()
    outcome(client.get(f"/fhir/ServiceRequest/{created['id']}", headers=xml), 406)
    outcome(client.get("/fhir/ServiceRequest", headers=xml), 406)
    outcome(client.get("/fhir/metadata", headers=xml), 406)
    outcome(post(client, "/fhir/ServiceRequest", referral(), **xml), 406)
    assert stored(client) == 1  # the refused create did not write
    # _format overrides Accept, on reads as on searches
    for path in (f"/fhir/ServiceRequest/{created['id']}", "/fhir/ServiceRequest", "/fhir/metadata"):
        issues = outcome(client.get(path, params={"_format": "xml"}), 406)
        assert expressions(issues) == ["_format"]
        assert client.get(path, params={"_format": "json"}, headers=xml).status_code == 200
    # JSON anywhere in the list, or a wildcard, is fine
    for accept in ("application/fhir+xml;q=1.0, application/fhir+json;q=0.5", "*/*", "application/json"):
        response = client.get(f"/fhir/ServiceRequest/{created['id']}", headers={"Accept": accept})
        assert response.status_code == 200, accept


# ------------------------------------------------------------------ routes and methods


def test_unknown_route_under_fhir(client: TestClient) -> None:
    for path in (
        "/fhir/ServiceRequest/1/_history/1/extra",
        "/fhir/ServiceRequest/1/foo/bar",
        "/fhir/a/b/c/d/e/f",
    ):
        issues = outcome(client.get(path), 404)
        assert issues[0]["code"] == "not-found"


def test_method_not_allowed(client: TestClient) -> None:
    cases = [
        client.patch("/fhir/ServiceRequest/1", content="{}", headers=FHIR),
        client.delete("/fhir/ServiceRequest"),
        client.put("/fhir/ServiceRequest", content=json.dumps(referral()), headers=FHIR),
        client.post("/fhir/ServiceRequest/1/_history/1", content="{}", headers=FHIR),
    ]
    for response in cases:
        issues = outcome(response, 405)
        assert issues[0]["code"] == "not-supported"
        assert response.headers.get("allow")


# ------------------------------------------------------------------ validation


def test_unknown_element(client: TestClient) -> None:
    issues = outcome(post(client, "/fhir/ServiceRequest", referral(foo="bar")), 400)
    assert "ServiceRequest.foo" in expressions(issues)
    issues = outcome(
        post(client, "/fhir/ServiceRequest", referral(subject={"reference": "Patient/1", "bar": 1})), 400
    )
    assert "ServiceRequest.subject.bar" in expressions(issues)
    assert stored(client) == 0


def test_missing_required_elements(client: TestClient) -> None:
    issues = outcome(post(client, "/fhir/ServiceRequest", {"resourceType": "ServiceRequest"}), 400)
    found = expressions(issues)
    for element in ("status", "intent", "subject"):
        assert f"ServiceRequest.{element}" in found
    assert {i["code"] for i in issues} == {"required"}
    issues = outcome(post(client, "/fhir/Task", {"resourceType": "Task"}), 400)
    assert {"Task.status", "Task.intent"} <= set(expressions(issues))
    issues = outcome(
        post(client, "/fhir/Observation", {"resourceType": "Observation", "status": "final"}), 400
    )
    assert "Observation.code" in expressions(issues)


BAD_CODES = [
    ("ServiceRequest", referral(status="bogus"), "ServiceRequest.status"),
    ("ServiceRequest", referral(intent="command"), "ServiceRequest.intent"),
    ("ServiceRequest", referral(priority="whenever"), "ServiceRequest.priority"),
    ("Task", {"resourceType": "Task", "status": "started", "intent": "order"}, "Task.status"),
    ("Patient", {"resourceType": "Patient", "gender": "M"}, "Patient.gender"),
    (
        "CarePlan",
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "order-set",
            "subject": {"reference": "Patient/1"},
        },
        "CarePlan.intent",
    ),
    (
        "Goal",
        {
            "resourceType": "Goal",
            "lifecycleStatus": "done",
            "description": {"text": "x"},
            "subject": {"reference": "Patient/1"},
        },
        "Goal.lifecycleStatus",
    ),
    (
        "ServiceRequest",
        referral(identifier=[{"value": "A"}, {"use": "primary", "value": "B"}]),
        "ServiceRequest.identifier[1].use",
    ),
    (
        "Patient",
        {"resourceType": "Patient", "identifier": [{"use": "primary", "value": "B"}]},
        "Patient.identifier[0].use",
    ),
    (
        "Patient",
        {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1", "use": "cell"}]},
        "Patient.telecom[0].use",
    ),
    (
        "Patient",
        {
            "resourceType": "Patient",
            "text": {"status": "auto", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        },
        "Patient.text.status",
    ),
    (
        "Condition",
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "cured"}
                ]
            },
        },
        "Condition.clinicalStatus",
    ),
    (
        "Patient",
        {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "id": "c1", "gender": "x"}]},
        "Patient.contained[0].gender",
    ),
]


def test_codes_outside_required_bindings(client: TestClient) -> None:
    # one test, not parametrized: each test pays for a fresh store on both backends
    for resource_type, resource, expression in BAD_CODES:
        issues = outcome(post(client, f"/fhir/{resource_type}", resource), 400)
        assert [i["code"] for i in issues] == ["code-invalid"], (expression, issues)
        assert expressions(issues) == [expression]
    for resource_type in {c[0] for c in BAD_CODES}:
        assert stored(client, resource_type) == 0


WRONG_TYPES = [
    ({"active": "true"}, "Patient.active"),
    ({"active": 1}, "Patient.active"),
    ({"birthDate": 19800101}, "Patient.birthDate"),
    ({"birthDate": "01/02/1980"}, "Patient.birthDate"),
    ({"name": {"family": "Okafor"}}, "Patient.name"),
    ({"name": [{"family": 7}]}, "Patient.name[0].family"),
    ({"name": [{"given": "Ada"}]}, "Patient.name[0].given"),
    ({"multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
    ({"multipleBirthInteger": 2.5}, "Patient.multipleBirthInteger"),
    ({"gender": ["female"]}, "Patient.gender"),
    ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
    ({"name": [{"family": None}]}, "Patient.name[0].family"),
    ({"name": []}, "Patient.name"),
    ({"name": [{}]}, "Patient.name[0]"),
    ({"name": [{"family": ""}]}, "Patient.name[0].family"),
    ({"name": [{"family": "a\u0000b"}]}, "Patient.name[0].family"),
    (
        {
            "name": [
                {"family": "Okafor", "family__ext": {"extension": [{"url": "http://x", "valueCode": "y"}]}}
            ]
        },
        "Patient.name[0].family__ext",
    ),
    (
        {"extension": [{"url": "http://example.org/x", "valueDecimal": "1.5"}]},
        "Patient.extension[0].valueDecimal",
    ),
    (
        {"_gender": {"extension": [{"url": "http://example.org/x", "valueBoolean": "no"}]}, "gender": "male"},
        "Patient._gender.extension[0].valueBoolean",
    ),
    ({"contained": [{"resourceType": "NotAThing", "id": "c1"}]}, "Patient.contained[0].resourceType"),
]


def test_wrong_datatypes(client: TestClient) -> None:
    for fields, expression in WRONG_TYPES:
        issues = outcome(post(client, "/fhir/Patient", {"resourceType": "Patient", **fields}), 400)
        assert expression in expressions(issues), (fields, issues)
    assert stored(client, "Patient") == 0


def test_wrong_decimal_and_integer_json_types(client: TestClient) -> None:
    base = {"resourceType": "Observation", "status": "final", "code": {"text": "ROM"}}
    for fields, expression in (
        ({"valueQuantity": {"value": "1.5"}}, "Observation.valueQuantity.value"),
        ({"valueQuantity": {"value": True}}, "Observation.valueQuantity.value"),
        ({"valueInteger": 1.0}, "Observation.valueInteger"),
        ({"valueInteger": 2**40}, "Observation.valueInteger"),
        ({"valueBoolean": "false"}, "Observation.valueBoolean"),
    ):
        response = client.post("/fhir/Observation", content=json.dumps({**base, **fields}), headers=FHIR)
        issues = outcome(response, 400)
        assert expression in expressions(issues), (fields, issues)
    assert stored(client, "Observation") == 0


def test_several_problems_are_reported_together(client: TestClient) -> None:
    resource = referral(status="bogus", foo=1, identifier=[{"use": "primary", "value": "1"}], intent=None)
    issues = outcome(post(client, "/fhir/ServiceRequest", resource), 400)
    assert {
        "ServiceRequest.status",
        "ServiceRequest.foo",
        "ServiceRequest.identifier[0].use",
        "ServiceRequest.intent",
    } <= set(expressions(issues))


def test_errors_never_echo_submitted_values(client: TestClient) -> None:
    name = [{"family": NAME, "given": [NAME]}]
    bad_resources = [
        {"resourceType": "Patient", "name": name, "gender": NAME},
        {"resourceType": "Patient", "name": name, "birthDate": NAME},
        {"resourceType": "Patient", "name": name, "active": NAME},
        {"resourceType": "Patient", "name": name, "telecom": [{"system": NAME, "value": NAME}]},
        {"resourceType": "Patient", "name": name, "identifier": [{"use": NAME, "value": NAME}]},
        {"resourceType": "Patient", "name": name, "deceasedDateTime": NAME},
        {"resourceType": "Patient", "name": name, "multipleBirthInteger": NAME},
        {"resourceType": "Patient", "name": name, "id": NAME},
        {"resourceType": "Patient", "name": [{"family": [NAME]}]},
        {"resourceType": "Patient", "name": name, "contact": [{"name": {"family": NAME}, "gender": 5}]},
        {"resourceType": "Patient", "name": name, "contained": [{"resourceType": NAME}]},
        {"resourceType": "Patient", "name": name, "extension": [{"url": "http://x", "valueInteger": NAME}]},
        {"resourceType": "Patient", "name": name, "meta": {"lastUpdated": NAME}},
        {"resourceType": NAME, "name": name},
    ]
    for resource in bad_resources:
        response = post(client, "/fhir/Patient", resource)
        outcome(response, 400)
        assert NAME not in response.text, response.text
        assert "Xanthippe" not in response.text
        validated = post(client, "/fhir/Patient/$validate", resource)
        assert validated.status_code == 200
        assert "Xanthippe" not in validated.text, validated.text
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": r, "request": {"method": "POST", "url": "Patient"}} for r in bad_resources],
    }
    response = post(client, "/fhir", bundle)
    assert response.status_code == 200
    assert "Xanthippe" not in response.text
    assert stored(client, "Patient") == 0


def test_an_invalid_update_changes_nothing(client: TestClient) -> None:
    created = post(client, "/fhir/ServiceRequest", referral()).json()
    bad = dict(created, status="bogus")
    issues = outcome(
        client.put(f"/fhir/ServiceRequest/{created['id']}", content=json.dumps(bad), headers=FHIR), 400
    )
    assert expressions(issues) == ["ServiceRequest.status"]
    current = client.get(f"/fhir/ServiceRequest/{created['id']}").json()
    assert current["meta"]["versionId"] == "1"
    assert current["status"] == "active"


# ------------------------------------------------------------------ $validate


def test_validate_a_valid_resource(client: TestClient) -> None:
    response = post(client, "/fhir/ServiceRequest/$validate", referral())
    assert response.status_code == 200
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["severity"] for i in body["issue"]] == ["information"]
    assert stored(client) == 0


def test_validate_an_invalid_resource(client: TestClient) -> None:
    response = post(client, "/fhir/ServiceRequest/$validate", referral(status="bogus", intent=None, foo=1))
    assert response.status_code == 200
    issues = response.json()["issue"]
    assert all(i["severity"] == "error" for i in issues)
    assert {"ServiceRequest.status", "ServiceRequest.intent", "ServiceRequest.foo"} <= set(
        expressions(issues)
    )
    assert stored(client) == 0


def test_validate_with_parameters(client: TestClient) -> None:
    def parameters(resource: dict) -> dict:
        return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}

    valid = post(client, "/fhir/ServiceRequest/$validate", parameters(referral()))
    assert valid.status_code == 200
    assert [i["severity"] for i in valid.json()["issue"]] == ["information"]
    invalid = post(client, "/fhir/ServiceRequest/$validate", parameters(referral(identifier=[{"use": "x"}])))
    assert invalid.status_code == 200
    assert expressions(invalid.json()["issue"]) == ["ServiceRequest.identifier[0].use"]
    mismatch = post(client, "/fhir/ServiceRequest/$validate", parameters({"resourceType": "Patient"}))
    assert mismatch.status_code == 200
    assert expressions(mismatch.json()["issue"]) == ["resourceType"]
    outcome(
        post(client, "/fhir/ServiceRequest/$validate", {"resourceType": "Parameters", "parameter": []}), 400
    )
    assert stored(client) == 0
    assert stored(client, "Patient") == 0


def test_validate_bad_requests(client: TestClient) -> None:
    outcome(post(client, "/fhir/ServiceRequest/$validate", "{oops"), 400)
    outcome(post(client, "/fhir/ServiceRequest/$validate", "", **{"Content-Type": "application/xml"}), 415)
    response = post(client, "/fhir/ServiceRequest/$validate", [referral()])
    assert response.status_code in (200, 400)
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["severity"] == "error"

"""Unit tests of mappings.fhir.validation and mappings.fhir.bindings (pure: no store, no HTTP)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.bindings import DATATYPE_BINDINGS, REQUIRED_BINDINGS, bindings_for
from mappings.fhir.validation import Issue, _json_fields, validate_resource

SECRET = "Wilhelmina Gruffydd-Oyelaran"  # must never come back in a diagnostic or an expression

MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {},
    "Practitioner": {},
    "PractitionerRole": {},
    "Organization": {"name": "Riverside Rehab"},
    "ServiceRequest": {"status": "active", "intent": "order", "subject": {"reference": "Patient/p1"}},
    "Task": {"status": "requested", "intent": "order"},
    "CarePlan": {"status": "active", "intent": "plan", "subject": {"reference": "Patient/p1"}},
    "Goal": {
        "lifecycleStatus": "active",
        "description": {"text": "Walk"},
        "subject": {"reference": "Patient/p1"},
    },
    "Condition": {"subject": {"reference": "Patient/p1"}},
    "Coverage": {
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"reference": "Organization/o"}],
    },
    "Encounter": {
        "status": "planned",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    },
    "Appointment": {
        "status": "booked",
        "start": "2024-03-04T09:00:00Z",
        "end": "2024-03-04T09:45:00Z",
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    },
    "Observation": {"status": "final", "code": {"text": "Pain"}},
    "DocumentReference": {
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf"}}],
    },
    "Communication": {"status": "completed"},
    "Provenance": {
        "target": [{"reference": "Patient/p1"}],
        "recorded": "2024-03-01T10:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/pr1"}}],
    },
    "AuditEvent": {
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2024-03-01T10:00:00Z",
        "agent": [{"requestor": True, "altId": "client-1"}],
        "source": {"observer": {"display": "therapy-hub"}},
    },
    "Composition": {
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "date": "2024-03-01T10:00:00Z",
        "author": [{"reference": "Practitioner/pr1"}],
        "title": "Referral feedback",
    },
}


def resource(resource_type: str, **fields: Any) -> dict[str, Any]:
    out = {"resourceType": resource_type, **MINIMAL[resource_type], **fields}
    return {k: v for k, v in out.items() if v is not ...}


def found(issues: list[Issue]) -> set[tuple[str, str | None]]:
    return {(i.code, i.expression) for i in issues}


def errors(value: Any, expected: str | None = None) -> list[Issue]:
    issues = validate_resource(value, expected)
    assert all(i.severity in ("error", "fatal") for i in issues)
    return issues


# ---------------------------------------------------------------- valid resources


@pytest.mark.parametrize("resource_type", SUPPORTED_TYPES)
def test_minimal_resources_are_valid(resource_type: str) -> None:
    assert validate_resource(resource(resource_type), resource_type) == []


def test_every_supported_type_has_a_minimal_example() -> None:
    assert set(MINIMAL) == set(SUPPORTED_TYPES)
    assert set(REQUIRED_BINDINGS) <= set(SUPPORTED_TYPES)


def test_a_rich_valid_resource() -> None:
    rich = {
        "resourceType": "Patient",
        "id": "p-1",
        "meta": {
            "versionId": "3",
            "lastUpdated": "2024-01-01T00:00:00Z",
            "profile": ["http://x.org/p"],
            "tag": [{"code": "t"}],
        },
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ada</div>'},
        "contained": [{"resourceType": "Organization", "id": "o1", "name": "Clinic"}],
        "extension": [
            {"url": "http://x.org/e", "extension": [{"url": "a", "valueDecimal": Decimal("1.50")}]}
        ],
        "identifier": [{"use": "official", "system": "urn:oid:1.2.3", "value": "42"}],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": "Okafor",
                "given": ["Ada", None],
                "_given": [None, {"extension": [{"url": "http://x.org/q", "valueCode": "CL"}]}],
            }
        ],
        "telecom": [{"system": "phone", "value": "555", "use": "mobile"}],
        "gender": "female",
        "_gender": {"extension": [{"url": "http://x.org/g", "valueString": "as stated"}]},
        "birthDate": "1980-02-29",
        "multipleBirthInteger": 2,
        "address": [{"use": "home", "type": "both", "line": ["1 Main St"]}],
        "managingOrganization": {"reference": "#o1"},
        "contact": [{"gender": "male", "telecom": [{"system": "email", "value": "a@b.c"}]}],
    }
    assert validate_resource(rich, "Patient") == []


def test_decimals_accept_json_numbers_in_every_form() -> None:
    for value in (
        Decimal("1.50"),
        Decimal("0.10"),
        Decimal("100.000"),
        Decimal("1E+2"),
        Decimal("-2.5E-7"),
        3,
        0,
    ):
        assert validate_resource(resource("Observation", valueQuantity={"value": value})) == [], value


# ---------------------------------------------------------------- the envelope


def test_not_an_object() -> None:
    for value in ([], "Patient", 1, None, Decimal("1.5")):
        issues = errors(value)
        assert [(i.code, i.expression) for i in issues] == [("structure", None)]


def test_resource_type_missing_or_not_a_string() -> None:
    assert found(errors({})) == {("required", "resourceType")}
    assert found(errors({"resourceType": 5})) == {("required", "resourceType")}


def test_resource_type_must_match_the_expected_type() -> None:
    issues = errors(resource("Patient"), "ServiceRequest")
    assert found(issues) == {("invalid", "resourceType")}
    assert "ServiceRequest" in issues[0].diagnostics
    # without an expected type any supported type is fine
    assert validate_resource(resource("Patient")) == []


def test_unsupported_types() -> None:
    assert found(errors({"resourceType": "Medication"})) == {("not-supported", "resourceType")}
    assert found(errors({"resourceType": "Foo"})) == {("not-supported", "resourceType")}


def test_the_resource_type_is_not_quoted_back() -> None:
    for expected in (None, "Patient"):
        for issue in errors({"resourceType": SECRET}, expected):
            assert SECRET not in issue.diagnostics


# ---------------------------------------------------------------- structure


def test_unknown_elements() -> None:
    assert ("structure", "ServiceRequest.foo") in found(errors(resource("ServiceRequest", foo=1)))
    nested = resource("ServiceRequest", subject={"reference": "Patient/1", "bar": True})
    assert ("structure", "ServiceRequest.subject.bar") in found(errors(nested))
    listed = resource("ServiceRequest", identifier=[{"value": "1"}, {"value": "2", "baz": 1}])
    assert ("structure", "ServiceRequest.identifier[1].baz") in found(errors(listed))


def test_python_field_names_are_not_fhir_json() -> None:
    # fhir.resources accepts its python names (populate_by_name); FHIR JSON does not have them
    issues = errors(
        resource(
            "Patient",
            name=[{"family": "A", "family__ext": {"extension": [{"url": "http://x", "valueCode": "y"}]}}],
        )
    )
    assert ("structure", "Patient.name[0].family__ext") in found(issues)
    issues = errors(resource("Encounter", **{"class": ..., "class_": {"code": "AMB"}}))
    assert ("structure", "Encounter.class_") in found(issues)
    assert ("structure", "Patient.fhir_comments") in found(errors(resource("Patient", fhir_comments="x")))


def test_missing_required_elements() -> None:
    issues = errors({"resourceType": "ServiceRequest"})
    assert {("required", f"ServiceRequest.{e}") for e in ("status", "intent", "subject")} <= found(issues)
    assert len(issues) == 3  # one issue per element, not one from each check
    assert {
        ("required", "Goal.lifecycleStatus"),
        ("required", "Goal.description"),
        ("required", "Goal.subject"),
    } <= found(errors({"resourceType": "Goal"}))
    assert ("required", "Coverage.payor") in found(errors(resource("Coverage", payor=...)))


@pytest.mark.parametrize(
    ("fields", "expression"),
    [
        ({"active": "true"}, "Patient.active"),
        ({"active": 1}, "Patient.active"),
        ({"active": "yes"}, "Patient.active"),
        ({"multipleBirthInteger": "3"}, "Patient.multipleBirthInteger"),
        ({"multipleBirthInteger": Decimal("3.0")}, "Patient.multipleBirthInteger"),
        ({"multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
        ({"multipleBirthInteger": 2**31}, "Patient.multipleBirthInteger"),
        ({"birthDate": 19800101}, "Patient.birthDate"),
        ({"birthDate": "1980-13-01"}, "Patient.birthDate"),
        ({"deceasedDateTime": "2020-01-01T10:00:00"}, "Patient.deceasedDateTime"),  # a time needs a zone
        ({"gender": 1}, "Patient.gender"),
        ({"gender": ["male"]}, "Patient.gender"),
        ({"name": {"family": "A"}}, "Patient.name"),
        ({"name": [{"given": "Ada"}]}, "Patient.name[0].given"),
        ({"name": [{"family": 7}]}, "Patient.name[0].family"),
        ({"name": [{"family": None}]}, "Patient.name[0].family"),
        ({"name": [None]}, "Patient.name[0]"),
        ({"name": []}, "Patient.name"),
        ({"name": [{}]}, "Patient.name[0]"),
        ({"name": [{"family": ""}]}, "Patient.name[0].family"),
        ({"name": [{"family": "a\x00b"}]}, "Patient.name[0].family"),
        ({"text": {"status": "generated", "div": ""}}, "Patient.text.div"),
        ({"id": "has space"}, "Patient.id"),
        ({"meta": {"lastUpdated": "yesterday"}}, "Patient.meta.lastUpdated"),
        ({"extension": [{"url": "http://x", "valueDecimal": "1.5"}]}, "Patient.extension[0].valueDecimal"),
        ({"extension": [{"valueString": "x"}]}, "Patient.extension[0].url"),
        (
            {"_gender": {"extension": [{"url": "http://x", "valueBoolean": "no"}]}},
            "Patient._gender.extension[0].valueBoolean",
        ),
        ({"managingOrganization": "Organization/1"}, "Patient.managingOrganization"),
    ],
)
def test_wrong_datatypes(fields: dict[str, Any], expression: str) -> None:
    issues = errors(resource("Patient", **fields), "Patient")
    assert issues, fields
    assert expression in {i.expression for i in issues}, issues
    assert {i.code for i in issues} <= {"value", "structure", "required", "invalid"}


def test_wrong_number_types_in_observation() -> None:
    cases = [
        ({"valueQuantity": {"value": "1.5"}}, "Observation.valueQuantity.value"),
        ({"valueQuantity": {"value": True}}, "Observation.valueQuantity.value"),
        ({"valueInteger": Decimal("1.0")}, "Observation.valueInteger"),
        ({"valueInteger": "1"}, "Observation.valueInteger"),
        (
            {"component": [{"code": {"text": "x"}, "valueQuantity": {"value": "2"}}]},
            "Observation.component[0].valueQuantity.value",
        ),
    ]
    for fields, expression in cases:
        assert expression in {i.expression for i in errors(resource("Observation", **fields))}, fields


def test_choice_elements_take_one_type() -> None:
    issues = errors(resource("Observation", valueString="a", valueInteger=1))
    assert issues and all(i.expression and i.expression.startswith("Observation") for i in issues)


def test_nulls_are_placeholders_only_in_primitive_arrays() -> None:
    ok = resource("Patient", name=[{"given": ["A", None, "C"], "_given": [None, {"id": "g2"}, None]}])
    assert validate_resource(ok) == []


# ---------------------------------------------------------------- contained resources


def test_contained_resources_are_validated() -> None:
    bad = resource(
        "ServiceRequest",
        contained=[
            {"resourceType": "NotAType", "id": "x"},
            {"resourceType": "Patient", "id": "p", "active": "yes", "gender": "M"},
            {"resourceType": "Organization", "id": "o", "foo": 1},
            {"resourceType": "Medication", "id": "m", "status": "active"},  # not served, but fine to contain
        ],
    )
    issues = found(errors(bad))
    assert ("not-supported", "ServiceRequest.contained[0].resourceType") in issues
    assert ("value", "ServiceRequest.contained[1].active") in issues
    assert ("code-invalid", "ServiceRequest.contained[1].gender") in issues
    assert ("structure", "ServiceRequest.contained[2].foo") in issues  # index as sent, after the unknown one
    assert not any(e and e.startswith("ServiceRequest.contained[3]") for _, e in issues)


def test_contained_resource_without_a_type() -> None:
    issues = errors(resource("Patient", contained=[{"id": "x"}]))
    assert issues
    assert all(i.expression and i.expression.startswith("Patient") for i in issues)


# ---------------------------------------------------------------- required bindings


@pytest.mark.parametrize(
    ("resource_type", "fields", "expression"),
    [
        ("ServiceRequest", {"status": "bogus"}, "ServiceRequest.status"),
        ("ServiceRequest", {"intent": "command"}, "ServiceRequest.intent"),
        ("ServiceRequest", {"priority": "soon"}, "ServiceRequest.priority"),
        (
            "ServiceRequest",
            {"identifier": [{"value": "1"}, {"use": "primary"}]},
            "ServiceRequest.identifier[1].use",
        ),
        (
            "ServiceRequest",
            {"requester": {"identifier": {"use": "main", "value": "1"}}},
            "ServiceRequest.requester.identifier.use",
        ),
        ("Task", {"status": "started"}, "Task.status"),
        ("Task", {"intent": "directive"}, "Task.intent"),
        ("Patient", {"gender": "M"}, "Patient.gender"),
        ("Patient", {"name": [{"use": "legal"}]}, "Patient.name[0].use"),
        ("Patient", {"telecom": [{"system": "phone"}, {"system": "pigeon"}]}, "Patient.telecom[1].system"),
        ("Patient", {"address": [{"type": "mailing"}]}, "Patient.address[0].type"),
        ("Patient", {"contact": [{"gender": "F"}]}, "Patient.contact[0].gender"),
        ("Patient", {"contact": [{"telecom": [{"use": "cell"}]}]}, "Patient.contact[0].telecom[0].use"),
        (
            "Patient",
            {"link": [{"other": {"reference": "Patient/2"}, "type": "same"}]},
            "Patient.link[0].type",
        ),
        (
            "Patient",
            {"text": {"status": "auto", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}},
            "Patient.text.status",
        ),
        ("CarePlan", {"intent": "order-set"}, "CarePlan.intent"),
        (
            "CarePlan",
            {"activity": [{"detail": {"status": "doing", "kind": "Task"}}]},
            "CarePlan.activity[0].detail.status",
        ),
        ("Goal", {"lifecycleStatus": "done"}, "Goal.lifecycleStatus"),
        ("Coverage", {"status": "valid"}, "Coverage.status"),
        ("Encounter", {"status": "open"}, "Encounter.status"),
        (
            "Encounter",
            {"location": [{"location": {"reference": "Location/1"}, "status": "busy"}]},
            "Encounter.location[0].status",
        ),
        ("Appointment", {"status": "scheduled"}, "Appointment.status"),
        (
            "Appointment",
            {"participant": [{"actor": {"reference": "Patient/p1"}, "status": "maybe"}]},
            "Appointment.participant[0].status",
        ),
        ("Observation", {"status": "done"}, "Observation.status"),
        (
            "Observation",
            {"valueQuantity": {"value": 1, "comparator": "~"}},
            "Observation.valueQuantity.comparator",
        ),
        ("DocumentReference", {"docStatus": "draft"}, "DocumentReference.docStatus"),
        ("Communication", {"status": "sent"}, "Communication.status"),
        (
            "PractitionerRole",
            {"availableTime": [{"daysOfWeek": ["mon", "funday"]}]},
            "PractitionerRole.availableTime[0].daysOfWeek[1]",
        ),
        (
            "ServiceRequest",
            {"occurrenceTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "week"}}},
            "ServiceRequest.occurrenceTiming.repeat.periodUnit",
        ),
        (
            "Condition",
            {
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "cured",
                        }
                    ]
                }
            },
            "Condition.clinicalStatus",
        ),
        (
            "Condition",
            {"verificationStatus": {"coding": [{"system": "http://example.org", "code": "confirmed"}]}},
            "Condition.verificationStatus",
        ),
        ("Condition", {"clinicalStatus": {"text": "active"}}, "Condition.clinicalStatus"),
    ],
)
def test_codes_outside_required_bindings(resource_type: str, fields: dict[str, Any], expression: str) -> None:
    issues = errors(resource(resource_type, **fields), resource_type)
    assert [(i.code, i.expression) for i in issues] == [("code-invalid", expression)]
    assert "required value set" in issues[0].diagnostics or "coding from" in issues[0].diagnostics


def test_codes_inside_required_bindings() -> None:
    clinical = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    }
    assert validate_resource(resource("Condition", clinicalStatus=clinical)) == []
    for status in ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"):
        assert validate_resource(resource("ServiceRequest", status=status)) == []
    for status in (
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ):
        assert validate_resource(resource("Task", status=status)) == []


def test_a_code_may_repeat_its_error_only_once() -> None:
    issues = errors(resource("Patient", identifier=[{"use": "x"}]))
    assert [(i.code, i.expression) for i in issues] == [("code-invalid", "Patient.identifier[0].use")]


def test_binding_tables_name_real_elements() -> None:
    for resource_type in SUPPORTED_TYPES:
        for binding in bindings_for(resource_type):
            model = model_class(resource_type)
            parts = binding.path.split(".")
            if parts[0] not in _json_fields(model):
                assert binding.path == "identifier.use" and resource_type in ("Provenance", "AuditEvent")  # common
                continue
            for part in parts[:-1]:
                model = _json_fields(model)[part].model
                assert model is not None, (resource_type, binding.path)
            assert parts[-1] in _json_fields(model), (resource_type, binding.path)
            if binding.required:
                assert "." not in binding.path
    for datatype, datatype_bindings in DATATYPE_BINDINGS.items():
        fields = _json_fields(model_class(datatype))
        for binding in datatype_bindings:
            assert binding.path in fields, (datatype, binding.path)


def test_binding_code_sets_match_r4() -> None:
    by_path = {b.path: b for b in bindings_for("ServiceRequest")}
    assert by_path["status"].codes == {
        "draft",
        "active",
        "on-hold",
        "revoked",
        "completed",
        "entered-in-error",
        "unknown",
    }
    assert by_path["priority"].codes == {"routine", "urgent", "asap", "stat"}
    assert by_path["identifier.use"].codes == {"usual", "official", "temp", "secondary", "old"}
    goal = {b.path: b for b in bindings_for("Goal")}
    assert goal["lifecycleStatus"].required
    assert "rejected" in goal["lifecycleStatus"].codes


# ---------------------------------------------------------------- robustness and privacy


WEIRD: list[Any] = [
    {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": {"coding": ["x", 5, None]},
    },
    {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": {"coding": [{"code": ["a"]}]},
    },
    {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": {"coding": "x"}},
    {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": "active"},
    {"resourceType": "ServiceRequest", "status": {"code": "active"}, "intent": ["order"], "subject": []},
    {"resourceType": "Patient", "identifier": "x"},
    {"resourceType": "Patient", "identifier": [{"use": ["official"]}]},
    {"resourceType": "Patient", "identifier": [["nested"]]},
    {"resourceType": "Patient", "contained": "x"},
    {
        "resourceType": "Patient",
        "contained": [None, 1, "x", [], {"resourceType": None}, {"resourceType": "Bundle"}],
    },
    {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]}],
    },
    {"resourceType": "Patient", "_gender": "x"},
    {"resourceType": "Patient", "extension": [{"url": "http://x", "valueReference": {"reference": 5}}]},
    {"resourceType": "Patient", "link": [{"type": {"x": 1}}]},
    {"resourceType": "Patient", "": 1, "0": 2, "a b": 3, "\x00": 4},
    {"resourceType": "PractitionerRole", "availableTime": [{"daysOfWeek": "mon"}]},
]


@pytest.mark.parametrize("value", WEIRD, ids=[str(i) for i in range(len(WEIRD))])
def test_odd_input_gives_issues_not_exceptions(value: Any) -> None:
    issues = validate_resource(value, value["resourceType"])
    assert issues
    assert all(isinstance(i, Issue) and i.severity == "error" and i.diagnostics for i in issues)
    # no library internals in what the client reads
    assert not any((i.expression or "").endswith(".root") for i in issues), issues
    assert not any("Invalid JSON" in i.diagnostics or "<class" in i.diagnostics for i in issues), issues


def test_diagnostics_never_quote_submitted_values() -> None:
    bad = [
        {"gender": SECRET},
        {"birthDate": SECRET},
        {"active": SECRET},
        {"id": SECRET},
        {"multipleBirthInteger": SECRET},
        {"deceasedDateTime": SECRET},
        {"telecom": [{"system": SECRET, "value": SECRET}]},
        {"identifier": [{"use": SECRET, "value": SECRET}]},
        {"name": [{"family": [SECRET]}]},
        {"name": SECRET},
        {"contact": [{"name": {"family": SECRET}, "gender": SECRET}]},
        {"contained": [{"resourceType": SECRET}]},
        {"contained": [{"resourceType": "Patient", "gender": SECRET}]},
        {"extension": [{"url": "http://x", "valueInteger": SECRET}]},
        {"extension": [{"url": "http://x", "valueString": "a", "valueCode": SECRET}]},
        {"meta": {"lastUpdated": SECRET}},
        {"text": {"status": SECRET, "div": SECRET}},
        {"managingOrganization": {"reference": ["x"], "display": SECRET}},
    ]
    for fields in bad:
        issues = validate_resource(resource("Patient", **{"name": [{"family": SECRET}], **fields}), "Patient")
        assert issues, fields
        for issue in issues:
            text = f"{issue.diagnostics} {issue.expression}"
            assert "Wilhelmina" not in text and "Gruffydd" not in text, (fields, issue)


def test_issue_as_fhir() -> None:
    issue = Issue("error", "code-invalid", "Bad code", "Patient.gender")
    assert issue.as_fhir() == {
        "severity": "error",
        "code": "code-invalid",
        "diagnostics": "Bad code",
        "expression": ["Patient.gender"],
    }
    assert "expression" not in Issue("information", "informational", "OK").as_fhir()


def test_validation_does_not_modify_its_input() -> None:
    value = resource(
        "Patient",
        contained=[{"resourceType": "Foo"}, {"resourceType": "Patient", "gender": "x"}],
        active="true",
    )
    before = repr(value)
    validate_resource(value, "Patient")
    assert repr(value) == before

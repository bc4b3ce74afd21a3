"""mappings.fhir.validation and mappings.fhir.bindings (pure: no store, no HTTP): required bindings,
robustness against odd input, and privacy of the diagnostics."""

from __future__ import annotations

from typing import Any

import pytest

from mappings.fhir import SUPPORTED_TYPES, model_class
from mappings.fhir.bindings import DATATYPE_BINDINGS, bindings_for
from mappings.fhir.validation import Issue, _json_fields, validate_resource
from tests.validation_cases import SECRET, errors, resource

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
        ("ChargeItem", {"status": "invoiced"}, "ChargeItem.status"),
        ("Claim", {"status": "submitted"}, "Claim.status"),
        ("Claim", {"use": "invoice"}, "Claim.use"),
        ("ClaimResponse", {"outcome": "paid"}, "ClaimResponse.outcome"),
        ("ClaimResponse", {"use": "remittance"}, "ClaimResponse.use"),
        ("ClaimResponse", {"processNote": [{"type": "email", "text": "x"}]}, "ClaimResponse.processNote[0].type"),
        ("CoverageEligibilityRequest", {"purpose": ["benefits", "coverage"]}, "CoverageEligibilityRequest.purpose[1]"),
        ("CoverageEligibilityRequest", {"status": "draft", "purpose": ["discovery", "x"]},
         "CoverageEligibilityRequest.purpose[1]"),
        ("CoverageEligibilityResponse", {"outcome": "approved"}, "CoverageEligibilityResponse.outcome"),
        ("CoverageEligibilityResponse", {"status": "complete"}, "CoverageEligibilityResponse.status"),
        ("Location", {"status": "closed"}, "Location.status"),
        ("Location", {"mode": "virtual"}, "Location.mode"),
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

"""mappings.fhir.validation (pure: no store, no HTTP): valid resources, the envelope, structure,
contained resources."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mappings.fhir import SUPPORTED_TYPES
from mappings.fhir.bindings import REQUIRED_BINDINGS
from mappings.fhir.validation import validate_resource
from tests.validation_cases import MINIMAL, SECRET, errors, found, resource

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

"""Unit tests of hub.fhir.searchparams: FHIR date ranges and index value extraction."""

from __future__ import annotations

from datetime import datetime

import pytest

from hub.fhir.dates import MAX_DATE, MIN_DATE, date_range
from hub.fhir.searchparams import extract, normalise_string, parse_reference

US = 999999


# ------------------------------------------------------------------ date_range


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", datetime(2024, 1, 1), datetime(2024, 12, 31, 23, 59, 59, US)),
        ("2024-02", datetime(2024, 2, 1), datetime(2024, 2, 29, 23, 59, 59, US)),  # leap year
        ("2023-02", datetime(2023, 2, 1), datetime(2023, 2, 28, 23, 59, 59, US)),
        ("2024-12", datetime(2024, 12, 1), datetime(2024, 12, 31, 23, 59, 59, US)),  # year rollover
        ("2024-03-15", datetime(2024, 3, 15), datetime(2024, 3, 15, 23, 59, 59, US)),
        ("2024-03-15T10:20", datetime(2024, 3, 15, 10, 20), datetime(2024, 3, 15, 10, 20, 59, US)),
        ("2024-03-15T10:20:30", datetime(2024, 3, 15, 10, 20, 30), datetime(2024, 3, 15, 10, 20, 30, US)),
        ("2024-03-15T10:20:30Z", datetime(2024, 3, 15, 10, 20, 30), datetime(2024, 3, 15, 10, 20, 30, US)),
        (
            "2024-03-15T10:20:30.5Z",
            datetime(2024, 3, 15, 10, 20, 30, 500000),
            datetime(2024, 3, 15, 10, 20, 30, 500000),
        ),
        (
            "2024-03-15T10:20:30.123456789Z",
            datetime(2024, 3, 15, 10, 20, 30, 123456),
            datetime(2024, 3, 15, 10, 20, 30, 123456),
        ),
        ("  2024-03-15  ", datetime(2024, 3, 15), datetime(2024, 3, 15, 23, 59, 59, US)),
    ],
)
def test_date_range_of_each_precision(text: str, low: datetime, high: datetime) -> None:
    assert date_range(text) == (low, high)


@pytest.mark.parametrize(
    ("text", "low"),
    [
        ("2024-03-15T10:20:30+02:00", datetime(2024, 3, 15, 8, 20, 30)),
        ("2024-03-15T10:20:30-05:30", datetime(2024, 3, 15, 15, 50, 30)),
        ("2024-03-15T10:20:30+00:00", datetime(2024, 3, 15, 10, 20, 30)),
        ("2024-01-01T01:00:00+02:00", datetime(2023, 12, 31, 23, 0, 0)),  # crosses a year boundary
        ("2024-03-15T10:20+01:00", datetime(2024, 3, 15, 9, 20)),
    ],
)
def test_date_range_converts_time_zones_to_utc(text: str, low: datetime) -> None:
    assert date_range(text)[0] == low


def test_date_range_width_is_kept_after_time_zone_conversion() -> None:
    low, high = date_range("2024-03-15T10:20+01:00")
    assert (low, high) == (datetime(2024, 3, 15, 9, 20), datetime(2024, 3, 15, 9, 20, 59, US))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "2024-1",
        "2024-13",
        "2024-02-30",
        "2024-03-15T25:00:00Z",
        "2024-03-15T10:20:61Z",
        "2024-03-15T10",
        "2024-03-15 10:20:30",
        "2024-03-15T10:20:30+0200",
        "2024-03-15T10:20:30X",
        "yesterday",
        "0000",
        "ge2024",  # prefixes are the parser's business, not date_range's
        # out of the representable range once converted to UTC: a ValueError, never OverflowError
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_date_range_rejects_what_is_not_a_fhir_date(text: str) -> None:
    with pytest.raises(ValueError):
        date_range(text)


def test_date_range_extremes() -> None:
    assert date_range("0001")[0] == MIN_DATE
    assert date_range("9999")[1] == MAX_DATE
    assert date_range("9999-12-31")[1] == MAX_DATE
    assert date_range("9999-12-31T23:59:59.999999Z") == (MAX_DATE, MAX_DATE)
    assert date_range("9999-12-31T23:59:59Z")[1] == MAX_DATE


# ------------------------------------------------------------------ strings and references


def test_normalise_string_is_case_and_accent_insensitive() -> None:
    assert normalise_string("  Müller ") == "muller"
    assert normalise_string("ÉLODIE") == "elodie"
    assert normalise_string("Straße") == "strasse"
    assert len(normalise_string("x" * 400)) == 255


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", ("Patient", "123")),
        ("Patient/123/_history/4", ("Patient", "123")),
        ("http://example.org/fhir/Patient/a-b.c", ("Patient", "a-b.c")),
        ("https://example.org/fhir/Practitioner/9/_history/1", ("Practitioner", "9")),
        ("#contained-1", None),
        ("urn:uuid:0b7f6c2c-5b7e-4f3a-9a3e-111111111111", None),
        ("urn:oid:1.2.3", None),
        ("patient/123", None),
        ("123", None),
        ("Patient/", None),
        ("A" * 70 + "/1", None),  # longer than any resource type name
    ],
)
def test_parse_reference(reference: str, expected: tuple[str, str] | None) -> None:
    assert parse_reference(reference) == expected


# ------------------------------------------------------------------ extract


def test_extract_tokens_from_codes_codeable_concepts_and_identifiers() -> None:
    values = extract(
        "ServiceRequest",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "identifier": [
                {"system": "urn:sys", "value": "A-1"},
                {"value": "no-system"},
                {"system": "urn:sys"},  # no value: nothing to index
            ],
            "category": [
                {
                    "coding": [{"system": "http://snomed.info/sct", "code": "91251008"}, {"code": "local"}],
                    "text": "PT",
                },
                {"text": "only text"},
            ],
            "code": {"coding": [{"system": "http://loinc.org", "display": "no code here"}]},
        },
    )
    tokens = set(values.tokens)
    assert ("status", None, "active") in tokens
    assert ("intent", None, "order") in tokens
    assert ("identifier", "urn:sys", "A-1") in tokens
    assert ("identifier", None, "no-system") in tokens
    assert ("category", "http://snomed.info/sct", "91251008") in tokens
    assert ("category", None, "local") in tokens
    assert not [t for t in tokens if t[0] == "code"]
    assert len([t for t in tokens if t[0] == "identifier"]) == 2
    assert len([t for t in tokens if t[0] == "category"]) == 2


def test_extract_cuts_tokens_to_the_index_width() -> None:
    values = extract(
        "Patient",
        {"resourceType": "Patient", "identifier": [{"system": "urn:" + "s" * 300, "value": "v" * 300}]},
    )
    assert values.tokens == [("identifier", ("urn:" + "s" * 300)[:255], "v" * 255)]


def test_extract_booleans_and_contact_points() -> None:
    values = extract(
        "Patient",
        {
            "resourceType": "Patient",
            "active": False,
            "telecom": [{"system": "email", "value": "a@example.org"}],
            "gender": "female",
        },
    )
    assert ("active", None, "false") in values.tokens
    assert ("telecom", "email", "a@example.org") in values.tokens
    assert ("gender", None, "female") in values.tokens


def test_extract_strings_are_normalised_and_cover_every_name_part() -> None:
    values = extract(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [
                {"family": "Müller", "given": ["Anna", "Lena"], "prefix": ["Dr."]},
                {"text": "Anna Müller"},
            ],
        },
    )
    names = {c for p, _, c in values.tokens if p == "name"}
    assert {"muller", "anna", "lena", "dr.", "anna muller"} <= names
    assert {c for p, _, c in values.tokens if p == "family"} == {"muller"}
    assert {c for p, _, c in values.tokens if p == "given"} == {"anna", "lena"}
    # the text as written is kept beside the normalised form, for :exact
    assert ("family", "Müller", "muller") in values.tokens
    assert ("name", "Anna Müller", "anna muller") in values.tokens


def test_extract_references_relative_absolute_versioned_and_contained() -> None:
    values = extract(
        "ServiceRequest",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "http://other.example/fhir/Patient/p9/_history/2"},
            "requester": {"reference": "Practitioner/dr1"},
            "performer": [
                {"reference": "#contained"},
                {"reference": "Organization/org1"},
                {"reference": "urn:uuid:0b7f6c2c-5b7e-4f3a-9a3e-111111111111"},
                {"identifier": {"system": "urn:npi", "value": "1"}},  # logical: not indexed
                {"display": "someone"},
            ],
        },
    )
    refs = set(values.references)
    assert ("subject", "Patient", "p9") in refs
    assert ("patient", "Patient", "p9") in refs
    assert ("requester", "Practitioner", "dr1") in refs
    assert {r for r in refs if r[0] == "performer"} == {("performer", "Organization", "org1")}


def test_extract_patient_parameter_only_keeps_patients() -> None:
    values = extract(
        "ServiceRequest",
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Group/g1"},
        },
    )
    assert ("subject", "Group", "g1") in values.references
    assert not [r for r in values.references if r[0] == "patient"]


def test_extract_dates_and_periods_with_open_ends() -> None:
    def period(**p: str) -> list[tuple[datetime, datetime]]:
        resource = {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/1"},
        }
        if p:
            resource["period"] = p
        return [(lo, hi) for name, lo, hi in extract("CarePlan", resource).dates if name == "date"]

    assert period(start="2024-01-01", end="2024-03") == [
        (datetime(2024, 1, 1), datetime(2024, 3, 31, 23, 59, 59, US))
    ]
    assert period(start="2024-01-01T10:00:00+01:00") == [(datetime(2024, 1, 1, 9), MAX_DATE)]
    assert period(end="2024") == [(MIN_DATE, datetime(2024, 12, 31, 23, 59, 59, US))]
    assert period() == []
    assert period(start="not a date") == []  # never an error at write time


def test_extract_dates_of_choice_types_and_partial_dates() -> None:
    condition = extract(
        "Condition",
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "onsetPeriod": {"start": "2020-05"},
        },
    )
    assert condition.dates == [("onset-date", datetime(2020, 5, 1), MAX_DATE)]
    patient = extract("Patient", {"resourceType": "Patient", "birthDate": "1980"})
    assert patient.dates == [("birthdate", datetime(1980, 1, 1), datetime(1980, 12, 31, 23, 59, 59, US))]
    goal = extract(
        "Goal",
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "walk"},
            "subject": {"reference": "Patient/1"},
            "target": [{"dueDate": "2024-06-01"}, {"dueDate": "2024-07-01"}],
        },
    )
    assert [d[1] for d in goal.dates if d[0] == "target-date"] == [datetime(2024, 6, 1), datetime(2024, 7, 1)]


def test_extract_ignores_unknown_types_and_absent_values() -> None:
    assert extract("Basic", {"resourceType": "Basic", "code": {"text": "x"}}).tokens == []
    empty = extract("Task", {"resourceType": "Task", "status": "ready", "intent": "order"})
    assert empty.references == [] and empty.dates == []


# ------------------------------------------------------------------ contact points


def test_telecom_is_indexed_as_written_and_in_comparable_form() -> None:
    role = {"resourceType": "PractitionerRole", "telecom": [
        {"system": "fax", "value": "+1 (555) 010-2000"}, {"system": "phone", "value": "15550103000"},
        {"system": "email", "value": "mailto:Dr.Lee@Direct.Example"}, {"system": "url", "value": "https://x.org"}]}
    tokens = {(p, s, c) for p, s, c in extract("PractitionerRole", role).tokens}
    assert {t for t in tokens if t[0] == "telecom"} == {
        ("telecom", "fax", "+1 (555) 010-2000"), ("telecom", "fax", "15550102000"),
        ("telecom", "phone", "15550103000"),
        ("telecom", "email", "mailto:Dr.Lee@Direct.Example"), ("telecom", "email", "dr.lee@direct.example"),
        ("telecom", "url", "https://x.org"),
    }
    assert {t for t in tokens if t[0] == "phone"} == {("phone", "phone", "15550103000")}
    assert {c for p, _, c in tokens if p == "email"} == {"mailto:Dr.Lee@Direct.Example", "dr.lee@direct.example"}

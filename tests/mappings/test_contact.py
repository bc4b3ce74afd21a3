"""mappings.fhir.contact.normal_contact: one comparable form per fax number, phone number or Direct address."""

from __future__ import annotations

import pytest

from mappings.fhir.contact import normal_contact


@pytest.mark.parametrize(("system", "value", "expected"), [
    ("fax", "+1 (555) 010-2000", "15550102000"),
    ("fax", "555.010.2000", "15550102000"),  # a North American number without its country code
    ("fax", "15550102000", "15550102000"),
    ("phone", "+44 20 7946 0000", "442079460000"),
    ("fax", "12-34", None),  # too short to be a number
    ("email", "mailto:Dr.Lee@Direct.Example", "dr.lee@direct.example"),
    ("email", "not an address", None),
    ("url", "https://clinic.example", None),
    ("fax", "", None),
])
def test_normal_contact(system: str, value: str, expected: str | None) -> None:
    assert normal_contact(system, value) == expected

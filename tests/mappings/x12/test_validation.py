"""validate(): pyx12 in memory names the segment at fault, and no patient data reaches logs or messages."""

from __future__ import annotations

import logging
import re
from datetime import datetime

import pytest

from mappings.x12.validation import ValidationIssue, validate
from mappings.x12.write837 import write_837p
from tests.mappings.x12.claims_support import control, submitter, week_of_claims

CREATED = datetime(2026, 3, 6, 18, 5)


@pytest.fixture(scope="module")
def week() -> str:
    return write_837p(week_of_claims(), submitter(), control(), created=CREATED)


def test_missing_billing_provider_name_is_named(week: str) -> None:
    broken = re.sub(r"NM1\*85\*[^~]*~", "", week, count=1)
    issues = validate(broken)
    assert issues
    missing = [i for i in issues if i.segment_id == "NM1" and i.code == "3"]
    assert missing and "2010AA" in missing[0].message
    assert all(isinstance(i.position, int) for i in issues)


def test_wrong_se_count_is_named(week: str) -> None:
    broken = re.sub(r"SE\*\d+\*", "SE*99*", week)
    (issue,) = validate(broken)
    assert (issue.segment_id, issue.element, issue.code) == ("SE", "SE01", "4")
    assert issue.position == week.count("~") - 2  # SE is the third segment from the end


def test_element_errors_name_the_element_and_never_the_value(week: str, caplog: pytest.LogCaptureFixture) -> None:
    broken = week.replace("DMG*D8*19500314*M", "DMG*D8*19501314*Q").replace("NM1*IL*1*Jones", "NM1*IL*1*" + "J" * 70)
    caplog.set_level(logging.DEBUG)
    issues = validate(broken)
    by_element = {i.element: i for i in issues}
    assert by_element["DMG02"].code == "8" and by_element["DMG03"].code == "7"
    assert by_element["NM103"].code == "5" and by_element["NM103"].segment_id == "NM1"
    text = " ".join(str(i) for i in issues)
    assert "19501314" not in text and "JJJJ" not in text
    # segments quoted by pyx12 ("Segment N3*... not found") are reduced to where it looked
    moved = validate(re.sub(r"NM1\*85\*[^~]*~", "", week, count=1))
    assert not any("Main Street" in i.message or "*" in i.message for i in moved)
    logged = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("pyx12"))
    assert "Jones" not in logged and "Main Street" not in logged and "JJJJ" not in logged


def test_pyx12_loggers_are_restored_after_validation(week: str) -> None:
    logger = logging.getLogger("pyx12")
    level, propagate = logger.level, logger.propagate
    validate(week)
    assert (logger.level, logger.propagate, logger.disabled) == (level, propagate, False)


def test_not_x12_and_unknown_guides_are_issues_not_passes() -> None:
    ((not_x12),) = validate("hello")
    assert (not_x12.segment_id, not_x12.code, not_x12.severity) == ("ISA", "x12.interchange-header", "error")
    other = write_837p(week_of_claims(), submitter(), control(), created=CREATED).replace(
        "005010X222A1", "005010X999A1")
    (issue,) = validate(other)
    assert isinstance(issue, ValidationIssue)
    assert (issue.code, issue.severity, issue.element) == ("map-not-available", "warning", "GS08")
    broken = re.sub(r"SE\*\d+\*", "SE*7*", other)
    assert {(i.segment_id, i.element, i.code, i.severity) for i in validate(broken)} == {
        ("SE", "SE01", "x12.se-count", "error"), ("GS", "GS08", "map-not-available", "warning")}

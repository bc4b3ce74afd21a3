"""Plan of care: input -> FHIR transaction Bundle -> summary -> certification PDF -> DocumentReference.

Golden cases live in ``data/plan_of_care/<case>/`` (``input.json``: ``now`` and ``plan``;
``expected.json``: the Bundle), compared as parsed JSON. After a deliberate change of the mapping,
rewrite them with ``REGENERATE_GOLDEN=1 pytest tests/mappings`` and review the diff.

This conftest holds the golden cases, the shared readers and the physical-therapy plan fixtures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mappings.fhir import jsonio
from mappings.plan_of_care import (
    PlanOfCare,
    build_plan_of_care,
)

DATA = Path(__file__).parents[1] / "data" / "plan_of_care"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "input.json").exists())
RETURN_CODE = "POC-7F3K-9Q2M"
GENERATED_AT = datetime(2025, 1, 6, 16, 0, tzinfo=UTC)


def load_case(case: str) -> tuple[PlanOfCare, datetime]:
    raw = jsonio.loads((DATA / case / "input.json").read_bytes())
    return PlanOfCare.model_validate(raw["plan"]), datetime.fromisoformat(raw["now"])


def as_json(value: Any) -> Any:
    """What goes over the wire, parsed back (decimals stay Decimal)."""
    return jsonio.loads(jsonio.dumps(value))


def resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle["entry"]]


def of_type(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources(bundle) if r["resourceType"] == resource_type]


def external_refs(plan: PlanOfCare) -> set[str]:
    refs = {plan.patient, plan.referral, plan.author, plan.organization}
    if plan.diagnosis.reference:
        refs.add(plan.diagnosis.reference)
    return refs


@pytest.fixture(scope="module")
def pt_plan() -> PlanOfCare:
    return load_case("pt_low_back")[0]


@pytest.fixture(scope="module")
def pt_bundle(pt_plan: PlanOfCare) -> dict[str, Any]:
    return build_plan_of_care(pt_plan, now=datetime(2025, 1, 6, 15, 30, tzinfo=UTC))


def _raw(case: str = "pt_low_back") -> dict[str, Any]:
    return jsonio.loads((DATA / case / "input.json").read_bytes())["plan"]

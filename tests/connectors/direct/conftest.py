"""Certificates for the Direct tests: made per session by a throw-away CA, never stored."""

from __future__ import annotations

import pytest

from sandboxes.direct_ca import Issued, TestCA

CLINIC = "clinic@direct.clinic.test"
PHYSICIAN = "drsmith@direct.physician.test"


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def other_ca() -> TestCA:
    return TestCA("Another CA")


@pytest.fixture(scope="session")
def clinic(ca: TestCA) -> Issued:
    return ca.issue(CLINIC)


@pytest.fixture(scope="session")
def physician(ca: TestCA) -> Issued:
    return ca.issue(PHYSICIAN)

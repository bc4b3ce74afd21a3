"""The billing profile of an x12_billing connector: validated with the connector's config, Medicare's
rules by default, a payer's own rules when it has them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.base import ConfigError, validate_config
from connectors.x12_billing.config import X12BillingConfig
from hub.billing.profiles import Clearinghouse, claim_number, for_payer
from tests.billing.scenario import ACME, MEDICARE, billing_profile

SFTP = {"host": "127.0.0.1", "username": "clinic", "password": "pw-for-tests",
        "known_host_key": "SHA256:" + "A" * 43}


def _config(**billing: object) -> X12BillingConfig:
    return validate_config(X12BillingConfig, {"transport": "sftp", "sftp": SFTP, "billing": billing_profile(**billing)},
                           connector="x12_billing")


def test_a_profile_with_medicare_defaults_and_per_payer_rules() -> None:
    config = _config(payers={MEDICARE: {"name": "Medicare Part B"},
                             ACME: {"name": "Acme", "filing_indicator": "CI",
                                    "rules": {"units_rule": "per-code", "kx_thresholds": []}}})
    profile = config.billing
    assert profile is not None
    assert profile.fee_schedule["97110"] == Decimal("45.00")
    medicare = profile.rules_for(MEDICARE)
    assert medicare.units_rule == "cms-8-minute" and dict(medicare.kx_thresholds)[2025] == Decimal("2410.00")
    assert medicare.kx_combined_pt_slp and profile.payers[MEDICARE].filing_indicator == "MB"
    assert profile.rules_for(ACME).units_rule == "per-code" and profile.rules_for(ACME).kx_thresholds == ()
    assert profile.rules_for("UNLISTED") == medicare
    assert X12BillingConfig.model_validate({"transport": "sftp", "sftp": SFTP}).billing is None  # optional


@pytest.mark.parametrize("bad", [{"organization": "Patient/p1"}, {"fee_schedule": {"97110": "-1"}},
                                 {"payers": {MEDICARE: {"name": "M", "filing_indicator": "XX"}}},
                                 {"submitter": {"name": "no etin"}}, {"surprise": True}])
def test_a_bad_profile_is_refused_naming_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as raised:
        _config(**bad)
    assert "billing" in str(raised.value)


def test_the_connector_for_a_payer_and_the_claim_number() -> None:
    listed = Clearinghouse(1, "a", _config(default=False).billing)  # type: ignore[arg-type]
    default = Clearinghouse(2, "b", _config(payers={}, default=True).billing)  # type: ignore[arg-type]
    assert for_payer([default, listed], ACME) is listed
    assert for_payer([listed, default], "OTHER1") is default
    assert for_payer([listed], "OTHER1") is None
    number = claim_number("clinic-a", "enc-1")
    assert number == claim_number("clinic-a", "enc-1") and len(number) == 16 and number.isalnum()
    assert number != claim_number("clinic-b", "enc-1") != claim_number("clinic-a", "enc-2")
    assert claim_number("clinic-a", "enc-1", 3) == number + "R3"
    assert len(claim_number("t" * 64, "e" * 64, 99)) <= 20

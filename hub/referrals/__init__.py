"""The closed referral loop: intake, the referral Task, plan of care, certification and signing."""

"""Short descriptions of the adjustment codes an 835 carries, for people reading a remittance.

The code lists are maintained by X12 (claim adjustment reason codes, CARC; claim adjustment group
codes; provider adjustment reason codes of PLB) and by CMS (remittance advice remark codes, RARC).
Only the codes a therapy practice meets most often are described here, in our own short words; any
other code is kept as the payer wrote it and its description is ``None``.
"""

from __future__ import annotations

#: CAS01: who the adjustment is charged to
GROUP_CODES: dict[str, str] = {
    "CO": "Contractual obligation (provider write-off, not billable to the patient)",
    "PR": "Patient responsibility (may be billed to the patient)",
    "OA": "Other adjustment",
    "PI": "Payer initiated reduction",
    "CR": "Correction or reversal of a prior claim",
}

#: CAS02/05/08...: claim adjustment reason codes
CARC: dict[str, str] = {
    "1": "Deductible amount",
    "2": "Coinsurance amount",
    "3": "Co-payment amount",
    "4": "Procedure code inconsistent with the modifier, or a required modifier is missing",
    "5": "Procedure code or bill type inconsistent with the place of service",
    "11": "Diagnosis inconsistent with the procedure",
    "16": "Claim or service lacks information or has billing errors needed for adjudication",
    "18": "Exact duplicate claim or service",
    "22": "Care may be covered by another payer under coordination of benefits",
    "23": "Impact of prior payer adjudication, including payments and adjustments",
    "27": "Expenses incurred after coverage ended",
    "29": "Time limit for filing has expired",
    "31": "Patient cannot be identified as our insured",
    "45": "Charge exceeds the fee schedule or contracted amount",
    "50": "Not deemed a medical necessity by the payer",
    "96": "Non-covered charge",
    "97": "Benefit included in the payment for another service already adjudicated",
    "109": "Not covered by this payer; send to the correct payer or contractor",
    "119": "Benefit maximum for this period or occurrence has been reached",
    "133": "Disposition of the claim or service is pending further review",
    "140": "Patient and insured health identification number and name do not match",
    "146": "Diagnosis was invalid for the date of service reported",
    "151": "Payer deems the information submitted does not support this many services",
    "167": "Diagnosis is not covered",
    "170": "Payment denied when performed or billed by this type of provider",
    "181": "Procedure code was invalid on the date of service",
    "185": "Rendering provider is not eligible to perform the service billed",
    "197": "Precertification, authorization or notification absent",
    "198": "Precertification, notification or authorization exceeded",
    "204": "Service, equipment or drug is not covered under the patient's current benefit plan",
    "226": "Information requested from the billing or rendering provider was not provided or insufficient",
    "227": "Information requested from the patient or insured was not provided or insufficient",
    "234": "Procedure is not paid separately",
    "236": "Procedure or modifier combination not compatible with another procedure on the same day",
    "242": "Services not provided by network or primary care providers",
    "253": "Sequestration: reduction of federal payment",
    "256": "Service not payable under the patient's managed care contract",
    "B7": "Provider was not certified or eligible to be paid for this procedure on this date",
    "B9": "Patient is enrolled in a hospice",
    "B13": "Previously paid; payment for this claim or service may have been in an earlier payment",
    "N/A": "Not applicable",
}

#: LQ*HE, MOA, MIA: remittance advice remark codes
RARC: dict[str, str] = {
    "M15": "Separately billed services or tests were bundled; they are not paid separately",
    "M20": "Missing or incomplete or invalid HCPCS code",
    "M51": "Missing, incomplete or invalid procedure code",
    "M76": "Missing, incomplete or invalid diagnosis or condition",
    "M77": "Missing, incomplete or invalid place of service",
    "M80": "Not covered when performed on the same day or visit as another service",
    "MA01": "If you do not agree with the decision you may appeal within the stated time limit",
    "MA04": "Secondary payment cannot be considered without the primary payer's information",
    "MA18": "Claim information is also being forwarded to the patient's supplemental insurer",
    "MA130": "Claim has missing or invalid information and cannot be appealed; submit a new claim",
    "N4": "Missing, incomplete or invalid prior insurance carrier information",
    "N20": "Service not payable with other service rendered on the same date",
    "N115": "Decision based on a local coverage determination (LCD)",
    "N130": "Consult plan benefit documents or guidelines for coverage information",
    "N386": "Decision based on a national coverage determination (NCD)",
    "N362": "Number of days or units exceeds the acceptable maximum",
    "N522": "Duplicate of a claim processed or to be processed as a crossover claim",
    "N640": "Exceeds the number or frequency limits for this service",
    "N657": "Should be billed with the appropriate code for these services",
}

#: PLB03-1, 05-1...: provider level adjustment reason codes
PLB_REASONS: dict[str, str] = {
    "WO": "Overpayment recovery (withholding)",
    "72": "Authorized return (refund of a prior payment)",
    "L6": "Interest owed to the provider",
    "FB": "Forwarding balance (amount carried from or to another remittance)",
    "J1": "Nonreimbursable item",
    "CS": "Adjustment (see the reference for its reason)",
    "50": "Late charge",
    "51": "Interest penalty charge",
    "90": "Early payment allowance",
    "AP": "Acceleration of benefits",
    "B2": "Rebate",
    "B3": "Recovery allowance",
    "BD": "Bad debt adjustment",
    "BN": "Bonus",
    "C5": "Temporary allowance",
    "CR": "Capitation interest",
    "CT": "Capitation payment",
    "CV": "Capital passthru",
    "CW": "Certified registered nurse anesthetist passthru",
    "DM": "Direct medical education passthru",
    "E3": "Withholding",
    "FC": "Fund allocation",
    "GO": "Graduate medical education passthru",
    "HM": "Hemophilia clotting factor supplement",
    "IP": "Incentive premium payment",
    "IR": "Internal Revenue Service withholding",
    "IS": "Interim settlement",
    "L3": "Penalty",
    "LE": "Levy",
    "LS": "Lump sum",
    "OA": "Organ acquisition passthru",
    "OB": "Offset for affiliated providers",
    "PI": "Periodic interim payment",
    "PL": "Payment final",
    "RA": "Retro-activity adjustment",
    "RE": "Return on equity",
    "SL": "Student loan repayment",
    "TL": "Third party liability",
    "WU": "Unspecified recovery",
}


def group_description(code: str) -> str | None:
    return GROUP_CODES.get(code.strip().upper())


def carc_description(code: str) -> str | None:
    return CARC.get(code.strip().upper())


def rarc_description(code: str) -> str | None:
    return RARC.get(code.strip().upper())


def plb_description(code: str) -> str | None:
    return PLB_REASONS.get(code.strip().upper())

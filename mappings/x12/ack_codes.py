"""Code lists of the X12 acknowledgements (TA1, 999 005010X231A1, 277CA 005010X214), with descriptions.

The tables hold the codes partners actually send; a code that is not here is kept by the readers
with ``description=None`` (a newer code list, a payer-specific code), never dropped or refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Classification = Literal["accepted", "rejected", "pending", "other"]


@dataclass(frozen=True, slots=True)
class Coded:
    """A code as received and its description (``None`` when the code is not in our tables)."""

    code: str
    description: str | None


def coded(code: str, table: dict[str, str]) -> Coded:
    return Coded(code, table.get(code))


# TA104 / IK501 / AK901: acknowledgement codes (P only in AK901)
ACK_STATUS: dict[str, str] = {
    "A": "Accepted",
    "E": "Accepted but errors were noted",
    "M": "Rejected, message authentication code (MAC) failed",
    "P": "Partially accepted, at least one transaction set was rejected",
    "R": "Rejected",
    "W": "Rejected, assurance failed validity tests",
    "X": "Rejected, content after decryption could not be analyzed",
}
ACCEPTED_STATUSES = frozenset({"A", "E"})

# TA105: interchange note codes
TA1_NOTE: dict[str, str] = {
    "000": "No error",
    "001": "The interchange control number in the header and trailer do not match",
    "002": "This standard as noted in the control standards identifier is not supported",
    "003": "This version of the controls is not supported",
    "004": "The segment terminator is invalid",
    "005": "Invalid interchange ID qualifier for sender",
    "006": "Invalid interchange sender ID",
    "007": "Invalid interchange ID qualifier for receiver",
    "008": "Invalid interchange receiver ID",
    "009": "Unknown interchange receiver ID",
    "010": "Invalid authorization information qualifier value",
    "011": "Invalid authorization information value",
    "012": "Invalid security information qualifier value",
    "013": "Invalid security information value",
    "014": "Invalid interchange date value",
    "015": "Invalid interchange time value",
    "016": "Invalid interchange standards identifier value",
    "017": "Invalid interchange version ID value",
    "018": "Invalid interchange control number value",
    "019": "Invalid acknowledgment requested value",
    "020": "Invalid test indicator value",
    "021": "Invalid number of included groups value",
    "022": "Invalid control structure",
    "023": "Improper (premature) end-of-file (transmission)",
    "024": "Invalid interchange content (e.g. invalid GS segment)",
    "025": "Duplicate interchange control number",
    "026": "Invalid data element separator",
    "027": "Invalid component element separator",
    "028": "Invalid delivery date in deferred delivery request",
    "029": "Invalid delivery time in deferred delivery request",
    "030": "Invalid delivery time code in deferred delivery request",
    "031": "Invalid grade of service code",
}

# IK304: implementation segment syntax error codes
SEGMENT_ERROR: dict[str, str] = {
    "1": "Unrecognized segment ID",
    "2": "Unexpected segment",
    "3": "Required segment missing",
    "4": "Loop occurs over maximum times",
    "5": "Segment exceeds maximum use",
    "6": "Segment not in defined transaction set",
    "7": "Segment not in proper sequence",
    "8": "Segment has data element errors",
    "I4": "Implementation 'not used' segment present",
    "I6": "Implementation dependent segment missing",
    "I7": "Implementation loop occurs under minimum times",
    "I8": "Implementation segment below minimum use",
    "I9": "Implementation dependent 'not used' segment present",
}

# IK403: implementation data element syntax error codes
ELEMENT_ERROR: dict[str, str] = {
    "1": "Required data element missing",
    "2": "Conditional required data element missing",
    "3": "Too many data elements",
    "4": "Data element too short",
    "5": "Data element too long",
    "6": "Invalid character in data element",
    "7": "Invalid code value",
    "8": "Invalid date",
    "9": "Invalid time",
    "10": "Exclusion condition violated",
    "12": "Too many repetitions",
    "13": "Too many components",
    "I6": "Code value not used in implementation",
    "I9": "Implementation dependent data element missing",
    "I10": "Implementation 'not used' data element present",
    "I11": "Implementation too few repetitions",
    "I12": "Implementation pattern match failure",
    "I13": "Implementation dependent 'not used' data element present",
}

# IK502..IK506: implementation transaction set syntax error codes
TRANSACTION_ERROR: dict[str, str] = {
    "1": "Transaction set not supported",
    "2": "Transaction set trailer missing",
    "3": "Transaction set control number in header and trailer do not match",
    "4": "Number of included segments does not match actual count",
    "5": "One or more segments in error",
    "6": "Missing or invalid transaction set identifier",
    "7": "Missing or invalid transaction set control number",
    "8": "Authentication key name unknown",
    "9": "Encryption key name unknown",
    "10": "Requested service (authentication or encryption) not available",
    "11": "Unknown security recipient",
    "12": "Incorrect message length (encryption only)",
    "13": "Message authentication code failed",
    "15": "Unknown security originator",
    "16": "Syntax error in decrypted text",
    "17": "Security not supported",
    "18": "Transaction set not in functional group",
    "19": "Invalid transaction set implementation convention reference",
    "23": "Transaction set control number not unique within the functional group",
    "24": "S3E security end segment missing for S3S security start segment",
    "25": "S3S security start segment missing for S3E security end segment",
    "26": "S4E security end segment missing for S4S security start segment",
    "27": "S4S security start segment missing for S4E security end segment",
    "I5": "Implementation one or more segments in error",
    "I6": "Implementation convention not supported",
}

# AK905..AK909: functional group syntax error codes
GROUP_ERROR: dict[str, str] = {
    "1": "Functional group not supported",
    "2": "Functional group version not supported",
    "3": "Functional group trailer missing",
    "4": "Group control number in the functional group header and trailer do not agree",
    "5": "Number of included transaction sets does not match actual count",
    "6": "Group control number violates syntax",
    "10": "Authentication key name unknown",
    "11": "Encryption key name unknown",
    "12": "Requested service (authentication or encryption) not available",
    "13": "Unknown security recipient",
    "14": "Unknown security originator",
    "15": "Syntax error in decrypted text",
    "16": "Security not supported",
    "17": "Incorrect message length (encryption only)",
    "18": "Message authentication code failed",
    "19": "Functional group control number not unique within interchange",
    "23": "S3E security end segment missing for S3S security start segment",
    "24": "S3S security start segment missing for S3E security end segment",
    "25": "S4E security end segment missing for S4S security start segment",
    "26": "S4S security start segment missing for S4E security end segment",
}

# STC01-1 / STC10-1 / STC11-1: health care claim status category codes (code source 507)
CLAIM_STATUS_CATEGORY: dict[str, str] = {
    "A0": "Acknowledgement/Forwarded: the claim has been forwarded to another entity",
    "A1": "Acknowledgement/Receipt: the claim has been received (not yet accepted for adjudication)",
    "A2": "Acknowledgement/Acceptance into adjudication system",
    "A3": "Acknowledgement/Returned as unprocessable claim",
    "A4": "Acknowledgement/Not found",
    "A5": "Acknowledgement/Split claim",
    "A6": "Acknowledgement/Rejected for missing information",
    "A7": "Acknowledgement/Rejected for invalid information",
    "A8": "Acknowledgement/Rejected for relational field in error",
    "DR01": "Data reporting acknowledgement/Receipt",
    "DR02": "Data reporting acknowledgement/Acceptance into the data reporting/processing system",
    "DR03": "Data reporting acknowledgement/Returned as unprocessable",
    "DR04": "Data reporting acknowledgement/Not found",
    "DR05": "Data reporting acknowledgement/Rejected for missing information",
    "DR06": "Data reporting acknowledgement/Rejected for invalid information",
    "DR07": "Data reporting acknowledgement/Rejected for relational field in error",
    "DR08": "Data reporting acknowledgement/Warning",
    "D0": "Data search unsuccessful",
    "E0": "Response not possible: error on submitted request data",
    "E1": "Response not possible: system status",
    "E2": "Information holder is not responding; resubmit at a later time",
    "E3": "Correction required: relational fields in error",
    "E4": "Trading partner agreement specific requirement not met",
    "F0": "Finalized",
    "F1": "Finalized/Payment",
    "F2": "Finalized/Denial",
    "F3": "Finalized/Revised",
    "F3F": "Finalized/Forwarded",
    "F3N": "Finalized/Not forwarded",
    "F4": "Finalized/Adjudication complete, no payment forthcoming",
    "P0": "Pending: adjudication/details",
    "P1": "Pending/In process",
    "P2": "Pending/Payer review",
    "P3": "Pending/Provider requested information",
    "P4": "Pending/Patient requested information",
    "P5": "Pending/Payer administrative/system hold",
    "R0": "Requests for additional information/General requests",
    "R1": "Requests for additional information/Entity requests",
    "R3": "Requests for additional information/Claim/line",
    "R4": "Requests for additional information/Documentation",
    "R5": "Requests for additional information/More specific detail",
    "R6": "Requests for additional information/Regulatory requirements",
    "R7": "Requests for additional information/Confirm care is consistent with health plan policy coverage",
    "R8": "Requests for additional information/Confirm care is consistent with health plan coverage exceptions",
    "R9": "Requests for additional information/Determination of medical necessity",
    "R10": "Requests for additional information/Support a filed grievance or appeal",
    "R11": "Requests for additional information/Pre-payment review of claims",
    "R12": "Requests for additional information/Clarification or justification of use for specified procedure code",
    "R13": "Requests for additional information/Original documents submitted are not readable",
    "R14": "Requests for additional information/Original documents received are not what was requested",
    "R15": "Requests for additional information/Workers compensation coverage verification",
    "R16": "Requests for additional information/Eligibility determination",
    "R17": "Replacement of a prior request",
}

_ACCEPTED_CATEGORIES = frozenset({"A0", "A1", "A2", "A5", "DR01", "DR02", "DR08"})
_REJECTED_CATEGORIES = frozenset(
    {"A3", "A4", "A6", "A7", "A8", "DR03", "DR04", "DR05", "DR06", "DR07", "E0", "E3", "E4"}
)


def classify_category(code: str) -> Classification:
    """What a category code means for the claim that was sent.

    accepted: received or accepted into adjudication (A0, A1, A2, A5, DR01, DR02, DR08);
    rejected: returned, not found or rejected, or a correction is required (A3, A4, A6..A8,
    DR03..DR07, E0, E3, E4); pending: pending or information requested (P*, R*);
    other: finalized (F*, a claim status answer more than an acknowledgement), E1/E2, D0, unknown.
    """
    if code in _ACCEPTED_CATEGORIES:
        return "accepted"
    if code in _REJECTED_CATEGORIES:
        return "rejected"
    if code[:1] in ("P", "R") and code in CLAIM_STATUS_CATEGORY:
        return "pending"
    return "other"


def overall(classifications: list[Classification]) -> Classification:
    """One classification from several statuses: any rejection wins, then pending, then acceptance."""
    for candidate in ("rejected", "pending", "accepted"):
        if candidate in classifications:
            return candidate
    return "other"


# STC01-2 / STC10-2 / STC11-2: health care claim status codes (code source 508), the common ones
CLAIM_STATUS: dict[str, str] = {
    "0": "Cannot provide further status electronically",
    "1": "For more detailed information, see remittance advice",
    "3": "Claim has been adjudicated and is awaiting payment cycle",
    "16": "Claim/encounter has been forwarded to entity",
    "19": "Entity acknowledges receipt of claim/encounter",
    "20": "Accepted for processing",
    "21": "Missing or invalid information",
    "24": "Entity not approved as an electronic submitter",
    "26": "Entity not found",
    "31": "Subscriber and policyholder name mismatched",
    "33": "Subscriber and subscriber id not found",
    "35": "Claim/encounter not found",
    "54": "Duplicate of a previously processed claim/line",
    "97": "Patient eligibility not found with entity",
    "116": "Claim submitted to incorrect payer",
    "128": "Entity's tax id",
    "145": "Entity's specialty/taxonomy code",
    "158": "Entity's date of birth",
    "164": "Entity's contract/member number",
    "187": "Date(s) of service",
    "247": "Line information",
    "254": "Principal diagnosis code",
    "255": "Diagnosis code",
    "400": "Claim is out of balance",
    "454": "Procedure code for services rendered",
    "455": "Revenue code for services rendered",
    "476": "Missing or invalid units of service",
    "477": "Diagnosis code pointer is missing or invalid",
    "481": "Claim/submission format is invalid",
    "562": "Entity's National Provider Identifier (NPI)",
    "684": "Rejected: syntax error noted for this claim, see the 999 acknowledgement",
    "718": "Claim/service not submitted within the required timeframe (timely filing)",
    "732": "Information submitted inconsistent with billing guidelines",
    "746": "Duplicate submission",
    "755": "Entity's primary identifier",
}

# STC01-3: entity identifier codes met in 277CA statuses
ENTITY: dict[str, str] = {
    "03": "Dependent",
    "1P": "Provider",
    "40": "Receiver",
    "41": "Submitter",
    "77": "Service location",
    "82": "Rendering provider",
    "85": "Billing provider",
    "87": "Pay-to provider",
    "DK": "Ordering physician",
    "DN": "Referring provider",
    "IL": "Insured or subscriber",
    "PR": "Payer",
    "QC": "Patient",
}

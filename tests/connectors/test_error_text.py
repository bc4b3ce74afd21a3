"""A partner's error answer reaches the hub's error text (stored as the job's last error, shown on the
dashboard) only as its status and coded reason: never its free text, where a partner may echo PHI."""

from __future__ import annotations

import json

import pytest

from connectors.httputil import coded_reason, error_for_status

PHI = ("Ana Rivera", "1961-04-12", "MRN-778812")
ECHO = f"Patient {PHI[0]} born {PHI[1]} ({PHI[2]}) already exists"


@pytest.mark.parametrize("body", [
    ECHO.encode(),
    f"<html><body><h1>Conflict</h1><p>{ECHO}</p></body></html>".encode(),
    json.dumps({"message": ECHO, "error": ECHO}).encode(),
    json.dumps({"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "duplicate", "diagnostics": ECHO, "details": {"text": ECHO}},
        {"severity": "error", "code": f"{PHI[0]}", "diagnostics": ECHO},
    ]}).encode(),
])
@pytest.mark.parametrize("status", [400, 401, 409, 422, 500, 503])
def test_no_free_text_of_the_answer_reaches_the_error(body: bytes, status: int) -> None:
    error = error_for_status(status, what="POST https://emr.example", reason="Whatever", body=body)
    assert error is not None and error.status == status
    message = str(error)
    assert f"-> {status} " in message
    assert not any(part in message for part in (*PHI, "Rivera", "born", "exists"))


def test_the_coded_reason_keeps_issue_codes_and_oauth_error_codes() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"code": "processing", "diagnostics": ECHO}, {"code": "duplicate"}, {"code": "processing"},
        {"code": "invalid"}, {"code": "required"}]}
    assert coded_reason(json.dumps(outcome).encode()) == "processing, duplicate, invalid (+1 more)"
    assert coded_reason(b'{"error": "invalid_client", "error_description": "' + ECHO.encode() + b'"}') == (
        "invalid_client")
    assert coded_reason(b"[1, 2]") == coded_reason(b"not json") == coded_reason(b"") == ""
    error = error_for_status(409, what="PUT https://emr.example", body=json.dumps(outcome).encode())
    assert str(error) == "PUT https://emr.example -> 409 Conflict: processing, duplicate, invalid (+1 more)"

"""The dashboard's triage page: a received document that matched nothing is listed (ids, channel,
reason: nothing of the document) and matched by hand, audited; the certification completes."""

from __future__ import annotations

from hub.documents.intake import run_intake
from hub.settings import Settings
from sandboxes.scans import scanned_pdf
from tests.dashboard.conftest import signed_in, web_client
from tests.documents.plans import certification_page, receive, text_pdf
from tests.security.conftest import add_client, secured


def test_a_document_in_triage_is_matched_by_hand_on_the_dashboard(settings: Settings) -> None:
    settings = secured(settings)
    with web_client(settings.model_copy(update={"auth_disabled": True})) as api, web_client(settings) as web:
        _, task_id = certification_page(api)
        document_id = receive(settings, scanned_pdf(text_pdf("Plan of care, signed")), "fax-7")
        assert run_intake(settings, settings.default_tenant, document_id).outcome == "triage"
        csrf = signed_in(web, add_client(settings, settings.default_tenant, "admin"))
        page = web.get("/dashboard/documents")
        assert page.status_code == 200 and f"DocumentReference/{document_id}" in page.text
        assert "no return code found" in page.text and "+1555" not in page.text
        refused = web.post(f"/dashboard/documents/{document_id}/match", data={"csrf": csrf, "task": "nope"},
                           follow_redirects=False)
        assert refused.status_code == 303
        assert api.get(f"/fhir/Task/{task_id}").json()["status"] == "requested"
        answer = web.post(f"/dashboard/documents/{document_id}/match", data={"csrf": csrf, "task": task_id},
                          follow_redirects=False)
        assert answer.status_code == 303, answer.text
        assert f"completed certification Task {task_id}" in web.get(answer.headers["location"]).text
        assert api.get(f"/fhir/Task/{task_id}").json()["status"] == "completed"
        assert f"DocumentReference/{document_id}" not in web.get("/dashboard/documents").text
        assert web.post(f"/dashboard/documents/{document_id}/match", data={"task": task_id},
                        follow_redirects=False).status_code == 403  # no CSRF token
        audits = [e["resource"] for e in api.get("/fhir/AuditEvent", params={"_count": "200"}).json()["entry"]]
        done = [a["outcome"] for a in audits if a.get("outcomeDesc", "").startswith("POST /dashboard/documents")]
        assert sorted(done) == ["0", "4"]

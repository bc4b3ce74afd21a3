"""Faxes delivered as TIFF (multi-page, CCITT G4, fine mode 204 x 196 dpi): read like a PDF, matched
to their certification automatically or by hand, kept as they came with a PDF rendition for the
signed version; the same fax delivered as PDF is a duplicate; bombs read as unreadable."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hub.app import create_app
from hub.documents.intake import run_intake
from hub.settings import Settings
from hub.unit_of_work import using_enqueuer
from mappings.documents.barcodes import read_pdf, return_codes
from mappings.documents.tiff import MAX_FRAMES, document_kind, read_tiff, sniff, tiff_pdf
from sandboxes.scans import faxed_tiff
from tests.documents.plans import certification_page, receive, text_pdf
from tests.documents.test_intake import intake_of, page_of
from tests.enqueuers import RecordingEnqueuer

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def hub(settings: Settings) -> Iterator[TestClient]:
    recording = RecordingEnqueuer()
    with using_enqueuer(recording), TestClient(create_app(settings, enqueuer=recording),
                                               base_url="http://testserver") as client:
        yield client


def contents(client: TestClient, reference: str) -> list[tuple[str, bytes]]:
    document = client.get(f"/fhir/{reference}").json()
    return [(c["attachment"]["contentType"], base64.b64decode(c["attachment"]["data"])) for c in document["content"]]


def test_a_fine_mode_g4_fax_is_read_with_square_pixels(hub: TestClient) -> None:
    plan, _ = certification_page(hub)
    fax = faxed_tiff(page_of(hub, plan), cover=True)
    with Image.open(io.BytesIO(fax)) as image:
        assert (image.n_frames, image.info["compression"], image.info["dpi"]) == (2, "group4", (204.0, 196.0))
    reading = read_tiff(fax)
    assert reading.pages == 2 and return_codes(reading) == ([plan["return_code"]], [])
    # the rendition keeps the fax's pixels and proportions, and hashes like the TIFF itself
    pdf = tiff_pdf(fax, created=WHEN)
    assert pdf is not None and pdf == tiff_pdf(fax, created=WHEN) and pdf.startswith(b"%PDF-")
    as_pdf = read_pdf(pdf)
    assert as_pdf.content_hash == reading.content_hash and return_codes(as_pdf)[0] == [plan["return_code"]]
    # the same fax at standard resolution (204 x 98) is other pixels: another hash, the code still read
    standard = read_tiff(faxed_tiff(page_of(hub, plan), cover=True, dpi=(204, 98)))
    assert standard.content_hash != reading.content_hash and return_codes(standard)[0] == [plan["return_code"]]


def test_content_types_any_case_and_octet_stream_by_its_bytes() -> None:
    tiff, pdf = faxed_tiff(text_pdf("x")), text_pdf("x")
    assert (sniff(tiff), sniff(pdf), sniff(b"GIF89a")) == ("image/tiff", "application/pdf", None)
    assert document_kind("IMAGE/TIFF", tiff) == "image/tiff"
    assert document_kind("Application/PDF; name=fax.pdf", pdf) == "application/pdf"
    assert document_kind("application/octet-stream", tiff) == "image/tiff"
    assert document_kind(None, pdf) == "application/pdf"
    assert document_kind("text/plain", pdf) is None  # a declared type other than these is believed


def test_image_bombs_and_broken_files_read_as_unreadable() -> None:
    huge = io.BytesIO()
    Image.new("1", (6000, 6000), 1).save(huge, format="TIFF", compression="group4")  # 36 M pixels, a few kB
    assert len(huge.getvalue()) < 100_000 and read_tiff(huge.getvalue()).pages == 0
    many = io.BytesIO()
    frame = Image.new("1", (8, 8), 1)
    frame.save(many, format="TIFF", save_all=True, append_images=[frame] * MAX_FRAMES, compression="group4")
    assert read_tiff(many.getvalue()).pages == 0 and tiff_pdf(many.getvalue(), created=WHEN) is None
    assert read_tiff(b"II*\x00" + b"\x00" * 64).pages == 0
    assert read_tiff(text_pdf("not a tiff")).pages == 0


def test_a_tiff_fax_completes_its_certification_and_keeps_the_tiff(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    fax = faxed_tiff(page_of(hub, plan), cover=True)
    document_id = receive(settings, fax, "fax-tiff-1", content_type="application/octet-stream")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.task, outcome.reason) == ("matched", task_id, "matched by barcode")
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "completed"
    received = contents(hub, f"DocumentReference/{document_id}")
    assert received[0] == ("application/octet-stream", fax)  # as it came
    assert received[1][0] == "application/pdf" and read_pdf(received[1][1]).content_hash == read_tiff(fax).content_hash
    [entry] = hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]
    provenance = entry["resource"]
    assert {"role": "source", "what": {"reference": f"DocumentReference/{document_id}"}} in provenance["entity"]
    assert base64.b64decode(provenance["signature"][0]["data"]) == received[1][1]
    signed_ref = next(t["reference"] for t in provenance["target"] if t["reference"].startswith("DocumentReference/"))
    assert contents(hub, signed_ref) == [received[1], received[0]]  # the PDF rendition, then the TIFF
    assert intake_of(hub.get(f"/fhir/DocumentReference/{document_id}").json()) == "matched"
    # the intake again changes nothing
    assert run_intake(settings, settings.default_tenant, document_id).outcome == "matched"
    assert len(contents(hub, f"DocumentReference/{document_id}")) == 2


def test_the_same_fax_as_tiff_and_as_pdf_is_a_duplicate(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    fax = faxed_tiff(page_of(hub, plan))
    first = receive(settings, fax, "fax-tiff-2", content_type="image/TIFF")
    pdf = tiff_pdf(fax, created=WHEN)  # what a vendor delivering PDF sends: the fax's images as pages
    assert pdf is not None
    again = receive(settings, pdf, "fax-pdf-2", content_type="APPLICATION/PDF")
    assert run_intake(settings, settings.default_tenant, first).outcome == "matched"
    outcome = run_intake(settings, settings.default_tenant, again)
    assert (outcome.outcome, outcome.duplicate_of, outcome.task) == ("duplicate", first, task_id)
    assert len(hub.get("/fhir/Provenance", params={"target": plan["care_plan"]}).json()["entry"]) == 1


def test_an_unreadable_tiff_waits_in_triage_and_is_matched_by_hand(hub: TestClient, settings: Settings) -> None:
    plan, task_id = certification_page(hub)
    fax = faxed_tiff(text_pdf("Plan of care, signed", "Return code: (illegible)"))
    document_id = receive(settings, fax, "fax-tiff-9", content_type="image/tiff")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.reason) == ("triage", "no return code found")
    listed = hub.get("/admin/api/documents/triage").json()["items"]
    assert [(d["id"], d["channel"]) for d in listed] == [(document_id, "fax")]
    matched = hub.post(f"/admin/api/documents/{document_id}/match", json={"task": task_id})
    assert matched.status_code == 200, matched.text
    assert matched.json()["outcome"] == "matched"
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "completed"
    care_plan = hub.get(f"/fhir/{plan['care_plan']}").json()
    assert any(e["url"].endswith("plan-certified") for e in care_plan["extension"])
    received = contents(hub, f"DocumentReference/{document_id}")
    assert received[0] == ("image/tiff", fax) and received[1][0] == "application/pdf"


def test_a_broken_tiff_goes_to_triage_and_cannot_be_the_signature(hub: TestClient, settings: Settings) -> None:
    _, task_id = certification_page(hub)
    document_id = receive(settings, b"II*\x00" + b"\x00" * 64, "fax-tiff-0", content_type="image/tiff")
    outcome = run_intake(settings, settings.default_tenant, document_id)
    assert (outcome.outcome, outcome.reason) == ("triage", "not a readable PDF or TIFF")
    refused = hub.post(f"/admin/api/documents/{document_id}/match", json={"task": task_id})
    assert refused.status_code == 409
    assert hub.get(f"/fhir/Task/{task_id}").json()["status"] == "requested"

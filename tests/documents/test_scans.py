"""A certification page printed, signed by hand and scanned still says which plan it answers: its
barcode is read from the pixels alone, and the same scan in another PDF container hashes the same."""

from __future__ import annotations

import base64
import io

import pypdfium2 as pdfium
import pytest
from fastapi.testclient import TestClient
from reportlab.pdfgen import canvas

from mappings.documents.barcodes import read_pdf, return_codes
from sandboxes.scans import page_range, rewrap_pdf, scanned_pdf
from tests.documents.plans import certification_page


def test_the_barcode_is_read_from_a_scanned_signed_page_without_a_text_layer(client: TestClient) -> None:
    plan, _ = certification_page(client)
    page = base64.b64decode(client.get(f"/fhir/{plan['document']}").json()["content"][0]["attachment"]["data"])
    scan = scanned_pdf(page)
    document = pdfium.PdfDocument(scan)
    assert all(not document[i].get_textpage().get_text_range().strip() for i in range(len(document)))
    document.close()
    reading = read_pdf(scan)
    assert return_codes(reading) == ([plan["return_code"]], [])
    assert read_pdf(page).content_hash != reading.content_hash


def test_the_same_scan_in_another_container_hashes_the_same(client: TestClient) -> None:
    plan, _ = certification_page(client)
    page = base64.b64decode(client.get(f"/fhir/{plan['document']}").json()["content"][0]["attachment"]["data"])
    scan = scanned_pdf(page)
    again = rewrap_pdf(scan)
    assert again != scan
    assert read_pdf(again).content_hash == read_pdf(scan).content_hash
    assert read_pdf(scanned_pdf(page, seed=8)).content_hash != read_pdf(scan).content_hash


def test_a_page_that_claims_to_be_huge_is_rendered_small() -> None:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=(200 * 72, 200 * 72))  # 200 x 200 inches
    page.drawString(72, 72, "Return code: POC-0123456789")
    page.save()
    reading = read_pdf(buffer.getvalue())
    assert reading.pages == 1 and reading.content_hash and return_codes(reading) == ([], ["POC-0123456789"])
    assert read_pdf(b"%PDF-1.4 not really").pages == 0


def test_the_pages_after_a_fax_cover_sheet_scan_like_the_plan_itself(client: TestClient) -> None:
    plan, _ = certification_page(client)
    page = base64.b64decode(client.get(f"/fhir/{plan['document']}").json()["content"][0]["attachment"]["data"])
    cover = io.BytesIO()
    sheet = canvas.Canvas(cover)
    sheet.drawString(72, 700, "Fax cover sheet")
    sheet.save()
    faxed, plan_pages = pdfium.PdfDocument(cover.getvalue()), pdfium.PdfDocument(page)
    faxed.import_pages(plan_pages)
    buffer = io.BytesIO()
    faxed.save(buffer)
    faxed.close()
    plan_pages.close()
    kept = page_range(buffer.getvalue(), 1)  # what the referring office signs: not the cover sheet
    assert read_pdf(scanned_pdf(kept)).content_hash == read_pdf(scanned_pdf(page)).content_hash
    with pytest.raises(ValueError):
        page_range(page, 5)

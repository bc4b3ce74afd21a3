"""The fax cover sheet in front of a plan of care sent for certification (reportlab, pure).

One page: the clinic's name and fax number (where to send the signed page back), the recipient,
the human-readable return code with a QR code of it (the certification Task id too, so a returned
page can be matched by a scanner), the page count of the whole fax, and the confidentiality notice.
No I/O, no clock: the caller passes ``sent_on``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import date

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.units import inch
from reportlab.pdfgen.canvas import Canvas

__all__ = ["CONFIDENTIALITY_NOTICE", "CoverSheet", "qr_payload", "render_cover_sheet"]

CONFIDENTIALITY_NOTICE = (
    "CONFIDENTIALITY NOTICE: This facsimile contains protected health information that is privileged and "
    "confidential under federal and state law. It is intended only for the recipient named above. If you "
    "received it in error, notify the sender at the number above immediately and destroy every copy; any "
    "review, use, disclosure or distribution by others is prohibited."
)
_RETURN_CODE = re.compile(r"[A-Z0-9\-]{4,32}")
_TASK_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class CoverSheet:
    clinic_name: str
    clinic_fax: str
    return_code: str
    task_id: str
    total_pages: int  # the cover included
    sent_on: date
    recipient_name: str | None = field(default=None, repr=False)
    recipient_fax: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _RETURN_CODE.fullmatch(self.return_code):
            raise ValueError("CoverSheet.return_code must be 4-32 of A-Z, 0-9 and '-'")
        if not _TASK_ID.fullmatch(self.task_id):
            raise ValueError("CoverSheet.task_id must be a FHIR id")
        if self.total_pages < 1:
            raise ValueError("CoverSheet.total_pages must be at least 1")


def qr_payload(sheet: CoverSheet) -> str:
    """What the QR code holds: ``THUB:<return code>:Task/<id>`` (no PHI)."""
    return f"THUB:{sheet.return_code}:Task/{sheet.task_id}"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def render_cover_sheet(sheet: CoverSheet) -> bytes:
    """The cover sheet as a one-page PDF."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=LETTER, invariant=True)
    canvas.setTitle(f"Fax cover {sheet.return_code}")
    width, height = LETTER
    left = 1 * inch
    y = height - 1.1 * inch
    canvas.setFont("Helvetica-Bold", 26)
    canvas.drawString(left, y, "FAX")
    y -= 0.5 * inch
    canvas.setFont("Helvetica-Bold", 14)
    canvas.drawString(left, y, sheet.clinic_name[:80])
    y -= 0.3 * inch
    canvas.setFont("Helvetica", 12)
    canvas.drawString(left, y, f"Return fax: {sheet.clinic_fax}")
    y -= 0.45 * inch
    rows = [("Date", sheet.sent_on.strftime("%m/%d/%Y")), ("To", (sheet.recipient_name or "Referring physician")[:80]),
            ("To fax", sheet.recipient_fax or ""), ("Pages", f"{sheet.total_pages} (including this cover)"),
            ("Re", "Plan of care for certification: please sign and fax back")]
    for label, value in rows:
        canvas.setFont("Helvetica-Bold", 12)
        canvas.drawString(left, y, f"{label}:")
        canvas.setFont("Helvetica", 12)
        canvas.drawString(left + 1.1 * inch, y, value)
        y -= 0.3 * inch
    y -= 0.2 * inch
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(left, y, f"Return code: {sheet.return_code}")
    y -= 0.25 * inch
    canvas.setFont("Helvetica", 10)
    canvas.drawString(left, y, "Keep this code (or this cover) on the signed page you fax back.")
    size = 1.8 * inch
    widget = QrCodeWidget(qr_payload(sheet), barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    renderPDF.draw(drawing, canvas, width - 1 * inch - size, height - 1 * inch - size)
    y -= 0.6 * inch
    canvas.setFont("Helvetica", 9)
    for line in _wrap(CONFIDENTIALITY_NOTICE, 100):
        canvas.drawString(left, y, line)
        y -= 0.17 * inch
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()

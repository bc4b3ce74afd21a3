"""What a received PDF says about itself: the barcodes on its pages, its text layer, and a hash of
what its pages look like.

:func:`read_pdf` renders each page (at most :data:`MAX_PAGES`) at :data:`DPI` with pdfium, decodes
the Code128 and QR barcodes on it (zxing-cpp), extracts the page's text layer (a PDF printed to fax
software keeps it; a scan has none), and computes :func:`page_hash` over the rendered pages. Pure
CPU: no I/O, nothing logged (the pages are PHI); a document pdfium cannot open reads as empty.

:func:`return_codes` finds the plan of care return codes (``POC-`` and ten capital hex digits, see
``hub.referrals.plan_records.plan_return_code``) in those texts, barcodes first.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import zxingcpp
from PIL import Image

__all__ = ["DPI", "MAX_PAGES", "MAX_SIDE", "PdfReading", "RETURN_CODE", "page_hash", "read_pdf", "return_codes"]

DPI = 200
#: pages read of one document: a certification page is one or two pages, a fax cover sheet one more
MAX_PAGES = 10
#: the return code of a plan revision's certification page
RETURN_CODE = re.compile(r"POC-[0-9A-F]{10}")
#: the longest side of a rendered page, in pixels (a US Letter page at 200 dpi is 1700 x 2200): a
#: page that claims to be huge is rendered smaller rather than filling the memory
MAX_SIDE = 3400
#: the side of the square grayscale thumbnail of a page that :func:`page_hash` hashes
THUMBNAIL = 32
#: gray levels kept of each thumbnail pixel (256 / 2**4 = 16 levels)
_LEVEL_SHIFT = 4



@dataclass(frozen=True)
class PdfReading:
    """What :func:`read_pdf` found; ``texts`` and ``barcodes`` never appear in ``repr``."""

    pages: int
    barcodes: tuple[str, ...] = field(repr=False)
    texts: tuple[str, ...] = field(repr=False)
    content_hash: str | None  # None when no page could be rendered


def page_hash(pages: list[Image.Image]) -> str:
    """SHA-256 (hex) over a 32x32 grayscale thumbnail of each page, 16 gray levels, in page order.

    It depends on what the pages look like, not on the file that carries them: the same page images
    in another PDF container (re-saved, another producer, other metadata or object order, a fax
    vendor's PDF vs the Direct attachment of the same scan) and rendered at another resolution hash
    the same. It is not a perceptual match: a page scanned again, re-compressed lossily or cropped
    usually hashes differently, and so does the same document with a page added or removed."""
    digest = hashlib.sha256(f"pages:{len(pages)}".encode())
    for page in pages:
        thumbnail = page.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
        digest.update(bytes(value >> _LEVEL_SHIFT for value in thumbnail.tobytes()))
    return digest.hexdigest()


def _barcodes(image: Image.Image) -> list[str]:
    # the formats are built per call: a zxing object kept in a module global outlives the interpreter's
    # clean-up of the extension, which then reports it as leaked at exit
    formats = zxingcpp.BarcodeFormats([zxingcpp.BarcodeFormat.Code128, zxingcpp.BarcodeFormat.QRCode])
    return [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=formats) if barcode.text]


def read_pdf(data: bytes, *, max_pages: int = MAX_PAGES, dpi: int = DPI) -> PdfReading:
    """Render (at ``dpi``, at most :data:`MAX_SIDE` pixels a side), decode and hash the first
    ``max_pages`` pages of the PDF ``data``."""
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError:
        return PdfReading(pages=0, barcodes=(), texts=(), content_hash=None)
    barcodes: list[str] = []
    texts: list[str] = []
    images: list[Image.Image] = []
    try:
        count = len(document)
        for index in range(min(count, max_pages)):
            page = document[index]
            try:
                width, height = page.get_size()  # in points
                scale = min(dpi / 72, MAX_SIDE / max(width, height, 1.0))
                image = page.render(scale=scale, grayscale=True).to_pil()
                images.append(image)
                barcodes.extend(_barcodes(image))
                textpage = page.get_textpage()
                try:
                    texts.append(textpage.get_text_range())
                finally:
                    textpage.close()
            finally:
                page.close()
    finally:
        document.close()
    return PdfReading(pages=count, barcodes=tuple(barcodes), texts=tuple(texts),
                      content_hash=page_hash(images) if images else None)


def return_codes(reading: PdfReading) -> tuple[list[str], list[str]]:
    """(the return codes the barcodes carry, those the text layer shows), each in order, unique."""

    def found(texts: tuple[str, ...]) -> list[str]:
        codes: list[str] = []
        for text in texts:
            for code in RETURN_CODE.findall(text):
                if code not in codes:
                    codes.append(code)
        return codes

    return found(reading.barcodes), found(reading.texts)

"""What a received PDF says about itself: the barcodes on its pages, its text layer, and a hash of
what its pages look like.

:func:`read_pdf` renders each page (at most :data:`MAX_PAGES`) at :data:`DPI` with pdfium, decodes
the Code128 and QR barcodes on it (zxing-cpp), extracts the page's text layer (a PDF printed to fax
software keeps it; a scan has none), and computes :func:`page_hash` over the pages. A page that is one
image and nothing else (a scan, a fax delivered as PDF) is hashed over that image's own pixels,
stretched to square pixels by the resolution the page gives it (:func:`square_pixels`), not over a
rendering: so that the same fax delivered as a TIFF (:mod:`mappings.documents.tiff`, the same
pixels) hashes the same. Other pages are hashed as rendered. Pure CPU: no I/O, nothing logged (the
pages are PHI); a document pdfium cannot open reads as empty.

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

__all__ = ["DPI", "MAX_IMAGE_PIXELS", "MAX_PAGES", "MAX_SIDE", "PdfReading", "RETURN_CODE", "decode_barcodes",
           "page_hash", "read_pdf", "return_codes", "square_pixels"]

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
#: pixels of one page image (a TIFF frame, the image a PDF page is): a US Letter page at 400 x 400
#: dpi is 3400 x 4400 = 15 M; an image twice that big is not decoded
MAX_IMAGE_PIXELS = 30_000_000
#: how much of the page an image must cover (each side) to be taken as the page itself
_COVER = 0.98



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


def square_pixels(image: Image.Image, dpi: tuple[float, float]) -> Image.Image:
    """``image`` in grayscale with square pixels: the axis of lower resolution (``dpi`` = x, y)
    stretched to the higher, at most :data:`MAX_SIDE` pixels a side."""
    x, y = dpi
    gray = image.convert("L")
    width, height = gray.size
    if x > y:
        height = round(height * x / y)
    elif y > x:
        width = round(width * y / x)
    shrink = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    return gray if size == gray.size else gray.resize(size, Image.Resampling.LANCZOS)


def _page_image(page: pdfium.PdfPage) -> Image.Image | None:
    """The one image a page consists of, with square pixels; None when the page is anything else
    (text, drawings, several images, rotated, an image not covering it, too many pixels)."""
    if page.get_rotation() % 360:
        return None
    objects = list(page.get_objects(max_depth=1))
    if len(objects) != 1 or not isinstance(objects[0], pdfium.PdfImage):
        return None
    image = objects[0]
    matrix = image.get_matrix()
    if abs(matrix.b) > 1e-6 or abs(matrix.c) > 1e-6 or matrix.a <= 0 or matrix.d <= 0:
        return None
    left, bottom, right, top = image.get_bounds()
    page_width, page_height = page.get_size()
    if (right - left) < _COVER * page_width or (top - bottom) < _COVER * page_height:
        return None
    pixels_wide, pixels_high = image.get_px_size()
    if not pixels_wide or not pixels_high or pixels_wide * pixels_high > MAX_IMAGE_PIXELS:
        return None
    bitmap = image.get_bitmap(render=False).to_pil()
    return square_pixels(bitmap, (pixels_wide * 72 / (right - left), pixels_high * 72 / (top - bottom)))


def decode_barcodes(image: Image.Image) -> list[str]:
    """The texts of the Code128 and QR barcodes on ``image``, in the order zxing finds them."""
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
    images: list[Image.Image] = []  # what is hashed: the page's own image, else its rendering
    try:
        count = len(document)
        for index in range(min(count, max_pages)):
            page = document[index]
            try:
                width, height = page.get_size()  # in points
                scale = min(dpi / 72, MAX_SIDE / max(width, height, 1.0))
                image = page.render(scale=scale, grayscale=True).to_pil()
                try:
                    own = _page_image(page)
                except (pdfium.PdfiumError, ValueError, OSError):  # an image pdfium cannot hand over
                    own = None
                images.append(own if own is not None else image)
                barcodes.extend(decode_barcodes(image))
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

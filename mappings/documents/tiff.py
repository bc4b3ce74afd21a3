"""Received faxes as TIFF (``image/tiff``): multi-page, CCITT G3/G4 compressed, often at fax "fine"
resolution (204 x 196 dpi, so the pixels are not square).

:func:`read_tiff` reads each frame (at most :data:`MAX_PAGES`) with Pillow, stretches it to square
pixels by its own x/y resolution, decodes its barcodes and hashes the pages exactly as
:func:`mappings.documents.barcodes.read_pdf` does, so that a TIFF reads as a PDF does (no text layer:
a fax image has none). :func:`tiff_pdf` is the PDF rendition of a TIFF (each frame one page of the
size the frame's resolution says), for what needs a PDF (the signed version of a certification page).
:func:`sniff` tells a PDF or a TIFF by its first bytes, for vendors that say ``application/octet-stream``.

Limits against image bombs: a frame of more than :data:`MAX_FRAME_PIXELS` pixels, or a file of more
than :data:`MAX_FRAMES` frames, reads as unreadable (no pages), before any frame is decoded. Pure:
no I/O, nothing logged (the pages are PHI).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from PIL import Image, ImageSequence, UnidentifiedImageError

from mappings.documents.barcodes import (
    MAX_IMAGE_PIXELS,
    MAX_PAGES,
    PdfReading,
    decode_barcodes,
    page_hash,
    square_pixels,
)

__all__ = ["MAX_FRAMES", "MAX_FRAME_PIXELS", "PDF", "TIFF", "document_kind", "read_tiff", "sniff", "tiff_pdf"]

PDF = "application/pdf"
TIFF = "image/tiff"
#: frames a TIFF may have at all (a fax of a few pages; a file with thousands of frames is no fax)
MAX_FRAMES = 200
#: pixels of one frame (see :data:`mappings.documents.barcodes.MAX_IMAGE_PIXELS`)
MAX_FRAME_PIXELS = MAX_IMAGE_PIXELS
#: the resolution assumed for a frame that states none (fax standard resolution is 204 x 98,
#: fine 204 x 196; square is the safest guess)
DEFAULT_DPI = (204.0, 204.0)
_EMPTY = PdfReading(pages=0, barcodes=(), texts=(), content_hash=None)
_ALIASES = {"image/tif": TIFF, "image/x-tiff": TIFF, "image/x-tif": TIFF, "application/x-pdf": PDF}


def sniff(data: bytes) -> str | None:
    """``application/pdf`` or ``image/tiff`` by the magic bytes of ``data``, else None."""
    if data[:1024].lstrip()[:5] == b"%PDF-":
        return PDF
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    return None


def document_kind(content_type: str | None, data: bytes) -> str | None:
    """What the intake reads ``data`` as (``application/pdf``, ``image/tiff``) or None: the declared
    type, any case, parameters dropped; a generic type (``application/octet-stream``, none) by its bytes."""
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    declared = _ALIASES.get(declared, declared)
    if declared in (PDF, TIFF):
        return declared
    if declared in ("", "application/octet-stream", "binary/octet-stream", "application/binary"):
        return sniff(data)
    return None


def _dpi(frame: Image.Image) -> tuple[float, float]:
    dpi: Any = frame.info.get("dpi")
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError):
        return DEFAULT_DPI
    if not (10 <= x <= 2400 and 10 <= y <= 2400):
        return DEFAULT_DPI
    return x, y


def _frames_within_limits(image: Image.Image) -> bool:
    """Whether every frame header is within the limits (read before any pixel is decoded)."""
    count = 0
    for frame in ImageSequence.Iterator(image):
        count += 1
        width, height = frame.size
        if count > MAX_FRAMES or width * height > MAX_FRAME_PIXELS or width == 0 or height == 0:
            return False
    image.seek(0)
    return True


def _square(frame: Image.Image) -> Image.Image:
    return square_pixels(frame, _dpi(frame))


def _open(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    if image.format != "TIFF":
        image.close()
        return None
    return image


def read_tiff(data: bytes, *, max_pages: int = MAX_PAGES) -> PdfReading:
    """Decode and hash the first ``max_pages`` frames of the TIFF ``data`` (see the module docstring);
    a file that is no TIFF, breaks the limits or cannot be decoded reads as no pages."""
    image = _open(data)
    if image is None:
        return _EMPTY
    try:
        if not _frames_within_limits(image):
            return _EMPTY
        pages: list[Image.Image] = []
        count = 0
        for frame in ImageSequence.Iterator(image):
            count += 1
            if len(pages) < max_pages:
                pages.append(_square(frame))
    except (OSError, ValueError, EOFError, Image.DecompressionBombError):
        return _EMPTY
    finally:
        image.close()
    barcodes = [text for page in pages for text in decode_barcodes(page)]
    return PdfReading(pages=count, barcodes=tuple(barcodes), texts=(), content_hash=page_hash(pages) if pages
                      else None)


def tiff_pdf(data: bytes, *, created: datetime, title: str = "Received fax") -> bytes | None:
    """The PDF rendition of the TIFF ``data``: every frame (within the limits) one page, its pixels as
    they are (bilevel kept bilevel), the page's size the pixels over the first frame's x and y
    resolution (so a fine-mode fax keeps its proportions); None when it is no readable
    TIFF. ``created`` is written as the PDF's dates, so the same TIFF gives the same bytes."""
    image = _open(data)
    if image is None:
        return None
    try:
        if not _frames_within_limits(image):
            return None
        pages = [frame.copy() if frame.mode in ("1", "L", "RGB") else frame.convert("L")
                 for frame in ImageSequence.Iterator(image)]
        dpi = _dpi(image)
    except (OSError, ValueError, EOFError, Image.DecompressionBombError):
        return None
    finally:
        image.close()
    stamp = (created if created.tzinfo else created.replace(tzinfo=UTC)).utctimetuple()
    buffer = io.BytesIO()
    first, *rest = pages
    first.save(buffer, format="PDF", save_all=True, append_images=rest, dpi=dpi, title=title,
               creationDate=stamp, modDate=stamp, producer="therapy-hub")
    return buffer.getvalue()


"""Signed plans of care as they come back from a referring office: printed, signed by hand, scanned
or faxed. :func:`scanned_pdf` turns a PDF into an image-only PDF that looks like that (rendered at
200 dpi, a pen scrawl on the signature line, rotated a little, speckled with noise): no text layer
is left, so whatever reads it has only the pixels. Deterministic for a given ``seed``."""

from __future__ import annotations

import io
import random

import pypdfium2 as pdfium
from PIL import Image, ImageDraw

__all__ = ["DPI", "faxed_tiff", "page_range", "rewrap_pdf", "scanned_pdf"]

DPI = 200


def _render(pdf: bytes, dpi: int) -> list[Image.Image]:
    document = pdfium.PdfDocument(pdf)
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            try:
                pages.append(page.render(scale=dpi / 72).to_pil().convert("L"))
            finally:
                page.close()
        return pages
    finally:
        document.close()


def _scrawl(page: Image.Image, rng: random.Random) -> None:
    """A pen signature: a few joined loops across the lower middle of the page."""
    draw = ImageDraw.Draw(page)
    width, height = page.size
    x, y = width * 0.15, height * 0.78
    points = [(x, y)]
    for _ in range(24):
        x += rng.uniform(8, 22)
        y = height * 0.78 + rng.uniform(-28, 28)
        points.append((x, y))
    draw.line(points, fill=0, width=4, joint="curve")


def _noise(page: Image.Image, rng: random.Random, specks: int) -> None:
    width, height = page.size
    pixels = page.load()
    assert pixels is not None
    for _ in range(specks):
        pixels[rng.randrange(width), rng.randrange(height)] = rng.choice((0, 80, 160))


def scanned_pdf(pdf: bytes, *, angle: float = 2.5, specks: int = 4000, seed: int = 7, dpi: int = DPI,
                signed: bool = True) -> bytes:
    """``pdf`` printed, signed (``signed``: a scrawl on every page), scanned askew by ``angle``
    degrees with ``specks`` dots of noise, as an image-only PDF at ``dpi``."""
    rng = random.Random(seed)
    scans = []
    for page in _render(pdf, dpi):
        if signed:
            _scrawl(page, rng)
        page = page.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
        _noise(page, rng, specks)
        scans.append(page)
    return _save(scans, dpi)


def rewrap_pdf(pdf: bytes) -> bytes:
    """The same pages in another PDF container (what a fax vendor or a Direct gateway does when it
    re-saves a document): a new file with other bytes, the page contents copied as they are."""
    source = pdfium.PdfDocument(pdf)
    target = pdfium.PdfDocument.new()
    try:
        target.import_pages(source)
        buffer = io.BytesIO()
        target.save(buffer, version=17)
        return buffer.getvalue()
    finally:
        target.close()
        source.close()


def page_range(pdf: bytes, start: int, stop: int | None = None) -> bytes:
    """The pages ``start`` to ``stop`` (0-based, ``stop`` excluded; None: to the end) of ``pdf`` as a
    PDF of their own: what the referring office keeps of a fax (the plan's pages, not its cover sheet)."""
    source = pdfium.PdfDocument(pdf)
    target = pdfium.PdfDocument.new()
    try:
        indices = list(range(len(source)))[start:stop]
        if not indices:
            raise ValueError("no such pages")
        target.import_pages(source, indices)
        buffer = io.BytesIO()
        target.save(buffer)
        return buffer.getvalue()
    finally:
        target.close()
        source.close()


def _save(pages: list[Image.Image], dpi: int) -> bytes:
    buffer = io.BytesIO()
    first, *rest = pages
    first.save(buffer, format="PDF", save_all=True, append_images=rest, resolution=float(dpi), title="Scan")
    return buffer.getvalue()


def faxed_tiff(pdf: bytes, *, dpi: tuple[int, int] = (204, 196), signed: bool = True, seed: int = 7,
               cover: bool = False) -> bytes:
    """``pdf`` as a fax service delivers it: printed, signed (``signed``), then sent as a multi-page
    bilevel TIFF, CCITT G4 compressed, at ``dpi`` (fax "fine" mode 204 x 196: the pixels are not
    square). ``cover``: a fax cover sheet first. Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    xdpi, ydpi = dpi
    pages = []
    for page in _render(pdf, xdpi):
        if signed:
            _scrawl(page, rng)
        page = page.resize((page.width, round(page.height * ydpi / xdpi)), Image.Resampling.BOX)
        pages.append(page.point(lambda value: 255 if value > 160 else 0).convert("1"))
    if cover:
        sheet = Image.new("1", pages[0].size, 1)
        ImageDraw.Draw(sheet).text((100, 100), "FAX COVER SHEET", fill=0)
        pages.insert(0, sheet)
    buffer = io.BytesIO()
    first, *rest = pages
    first.save(buffer, format="TIFF", save_all=True, append_images=rest, compression="group4", dpi=(xdpi, ydpi))
    return buffer.getvalue()

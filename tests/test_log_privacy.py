"""Every logger of every library goes through the scrubbing: no query string, SQL parameter or
credential reaches a log line, whichever handler writes it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from hub import logs

MRN = "MRN-QZ-771204"
NAME = "Quillfeather"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A handler of our own on the root, added after install(): like the ones Celery and uvicorn add."""
    logs.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(extra_field)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_httpx_request_lines_lose_their_query_even_on_a_child_logger(stream: io.StringIO) -> None:
    url = httpx.URL(f"http://127.0.0.1:9/fhir/Patient?identifier=urn%3Aoid%3A1%7C{MRN}&family={NAME}")
    # httpx's own line, and httpcore's, which logs on child loggers that have no filter of their own
    logging.getLogger("httpx").warning('HTTP Request: %s %s "%s %d %s"', "PUT", url, "HTTP/1.1", 201, "Created",
                                       extra={"extra_field": "-"})
    logging.getLogger("httpcore.http11").warning("send_request_headers.started request=<Request [b'GET', %r]>",
                                                 str(url), extra={"extra_field": "-"})
    text = stream.getvalue()
    assert MRN not in text and NAME not in text, text
    assert "http://127.0.0.1:9/fhir/Patient?[query redacted]" in text


def test_library_loggers_are_scrubbed_messages_arguments_exceptions_and_extra(stream: io.StringIO) -> None:
    for name in ("celery.app.trace", "kombu.connection", "uvicorn.error", "sqlalchemy.engine.Engine", "aiosmtpd",
                 "hl7", "workers.tasks"):
        logging.getLogger(name).error("failed for %s", f"/fhir/Patient?name={NAME}",
                                      extra={"extra_field": f"Patient?identifier={MRN}"})
    try:
        raise RuntimeError(f"Client error '404 Not Found' for url 'http://x/fhir/Coverage?identifier={MRN}'\n"
                           f"[SQL: SELECT 1]\n[parameters: ('{NAME}', '1958-11-23')]")
    except RuntimeError:
        logging.getLogger("celery.worker").exception("task raised", extra={"extra_field": "-"})
    text = stream.getvalue()
    assert MRN not in text and NAME not in text and "1958-11-23" not in text, text
    assert text.count("?[query redacted]") >= 8 and "[parameters: redacted]" in text


def test_records_made_by_hand_are_scrubbed_by_the_handlers_filter() -> None:
    logs.install()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logging.getLogger("uvicorn.access").addHandler(handler)
    logs.install()  # a handler added before install() gets the filter itself
    try:
        record = logging.makeLogRecord({"name": "uvicorn.access", "levelno": logging.INFO, "levelname": "INFO",
                                        "msg": '%s - "%s %s HTTP/%s" %d',
                                        "args": ("127.0.0.1:1", "GET", f"/fhir/Patient?family={NAME}", "1.1", 200)})
        logging.getLogger("uvicorn.access").handle(record)
    finally:
        logging.getLogger("uvicorn.access").removeHandler(handler)
    assert NAME not in out.getvalue() and '"GET /fhir/Patient?[query redacted] HTTP/1.1" 200' in out.getvalue()


def test_scrubbing_twice_changes_nothing_more() -> None:
    once = logs.scrub(f"GET /admin/api/jobs?limit=500&q={NAME} HTTP/1.1")
    assert logs.scrub(once) == once == "GET /admin/api/jobs?[query redacted] HTTP/1.1"
    assert logs.scrub("is that all? yes") == "is that all? yes"


def test_per_request_library_chatter_is_off_by_default() -> None:
    logs.install()
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore.connection").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)

"""Logging that keeps PHI and credentials out, for every logger of every library in every process.

Query strings are cut from every URL and path in a log line (searches and conditional updates by
business identifier carry names, birth dates and MRNs: ``Patient?identifier=...|MRN-1``), SQL
parameters are dropped, and bearer tokens, secrets and assertions are redacted.

One scrubbing step, applied twice over:

- as the log record factory (:func:`logging.setLogRecordFactory`): every record of every logger is
  scrubbed when it is made, whatever handlers uvicorn's ``dictConfig`` or Celery's worker set-up
  add later; this covers httpx, httpcore, celery.*, kombu, uvicorn.*, sqlalchemy, aiosmtpd, hl7 ...
- as a :class:`ScrubFilter` on the root's and those libraries' handlers, for records made by hand
  (``logging.makeLogRecord``) and for ``extra`` fields, which are set after the factory ran.

It is a filter, not a formatter: any formatter (plain, JSON, one that shows ``extra`` fields) gets
records that are already clean. :func:`install` is idempotent; every entry point calls it (the API's
lifespan, ``hub serve``, ``hub worker``, ``hub beat``, ``hub mllp``, ``hub demo``, the Celery app).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

_SECRETS = re.compile(
    r"(?i)(bearer\s+|basic\s+|client_secret=|client_assertion=|access_token\"?\s*[:=]\s*\"?)[^\s&\",]+"
)
#: a URL, an absolute path or a FHIR type (``Patient?identifier=...``) with a query: the query goes
_QUERY = re.compile(
    r"((?:[a-z][a-z0-9+.-]*://[^\s/?#\"'<>]*)?/[^\s?#\"'<>]*|\b[A-Z][A-Za-z]+)"
    r"\?(?!\[query redacted\])[^\s#\"'<>]+",
    re.I,
)
#: SQLAlchemy appends the statement's bound values to its errors: ``[parameters: ('Rivera', ...)]``
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
REDACTED_QUERY = "?[query redacted]"

#: the loggers of the hub and of the libraries it uses (their handlers get the filter too)
LOGGERS = ("", "hub", "workers", "connectors", "uvicorn", "uvicorn.access", "uvicorn.error", "httpx", "httpcore",
           "celery", "celery.task", "celery.redirected", "kombu", "amqp", "billiard", "sqlalchemy",
           "sqlalchemy.engine", "aiosmtpd", "mail.log", "hl7", "multiprocessing")
#: one line per HTTP request a connector makes is noise (and full URLs): warnings and errors only
QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
#: attributes every LogRecord has: the rest came in through ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def scrub(text: str) -> str:
    """``text`` without query strings, SQL parameters and credentials."""
    text = _QUERY.sub(lambda m: m.group(1) + REDACTED_QUERY, text)
    text = _SQL_PARAMETERS.sub("[parameters: redacted]", text)
    return _SECRETS.sub(lambda m: m.group(1) + "[redacted]", text)


def _scrub_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException):
        text = str(value)
        return value if scrub(text) == text else scrub(f"{type(value).__name__}: {text}")
    text = str(value)  # an httpx.URL, a Request, a dict ...: only its text reaches the log
    clean = scrub(text)
    return value if clean == text else clean


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Scrub a record in place: message, arguments, exception text and ``extra`` fields."""
    if isinstance(record.msg, str):
        record.msg = scrub(record.msg)
    else:
        record.msg = _scrub_value(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_value(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _scrub_value(v) for k, v in record.args.items()}
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    for key, value in list(vars(record).items()):
        if key not in _STANDARD and isinstance(value, str):
            setattr(record, key, scrub(value))
    return record


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def _scrubbing_factory(base: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(base(*args, **kwargs))

    factory.hub_scrubs = True  # type: ignore[attr-defined]
    return factory


def install() -> None:
    """Scrub every record of this process, and quieten per-request library chatter (idempotent)."""
    if not getattr(logging.getLogRecordFactory(), "hub_scrubs", False):
        logging.setLogRecordFactory(_scrubbing_factory(logging.getLogRecordFactory()))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(ScrubFilter())
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(ScrubFilter())
    for name, level in QUIET.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:  # an explicit choice (logging config) wins
            logger.setLevel(level)

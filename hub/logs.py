"""Logging that keeps PHI and credentials out: query strings (searches carry names, birth dates,
identifiers) are cut from access logs, and bearer tokens, secrets and assertions are redacted."""

from __future__ import annotations

import logging
import re

_SECRETS = re.compile(
    r"(?i)(bearer\s+|basic\s+|client_secret=|client_assertion=|access_token\"?\s*[:=]\s*\"?)[^\s&\",]+"
)


def _cut_query(value: object) -> object:
    text = str(value)
    if "?" in text and (text.startswith(("http://", "https://", "/"))):
        return text.split("?", 1)[0] + "?[query redacted]"
    return value


def scrub(text: str) -> str:
    return _SECRETS.sub(lambda m: m.group(1) + "[redacted]", text)


class ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str) and "?" in args[2]:
                args[2] = args[2].split("?", 1)[0] + "?[query redacted]"
            record.args = tuple(args)
        if record.name.startswith("httpx") and isinstance(record.args, tuple):
            record.args = tuple(_cut_query(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> None:
    """Attach the filter to the loggers the hub and its server write to (idempotent)."""
    for name in ("", "hub", "uvicorn", "uvicorn.access", "uvicorn.error", "celery", "workers", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(ScrubFilter())
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(ScrubFilter())

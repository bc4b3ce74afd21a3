"""Checking an outbound X12 file against its implementation guide with pyx12, before it goes out.

pyx12 (``x12n_document``) is run in memory: the file is read from a ``StringIO`` and pyx12's error
tree is taken from its JSON report, also in memory; its 999 is not used and nothing is written to
disk. Its exit codes and return value are not trusted alone (see the dependency notes): an issue is
every error pyx12 records, at interchange, group, transaction set, segment or element level.

PHI: pyx12 logs with the ``pyx12`` loggers and some messages quote the data. While :func:`validate`
runs those loggers are silenced and do not propagate; the issues it returns name the segment, its
position, the element and pyx12's error code, and the offending value is removed from the message.

pyx12 4.0.0 ships maps for 005010X222A1 (837P) but none for the 270 of 005010X279A1 (its map index
keeps the 5010 270 commented out): such a file has its envelope checked by our reader and gets a
``map-not-available`` warning rather than a false pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from mappings.x12.reader import X12SyntaxError, read_interchanges

#: implementation guides (GS08) pyx12 4.0.0 has a map for and that the hub writes
SUPPORTED_VERSIONS = frozenset({"005010X222A1"})

#: 999 IK304 (segment) and IK403 (element) codes, for messages that need no data
_SEGMENT_CODES = {
    "1": "unrecognized segment", "2": "unexpected segment", "3": "required segment missing",
    "4": "loop occurs over maximum times", "5": "segment exceeds maximum use",
    "6": "segment not in defined transaction set", "7": "segment not in proper sequence",
    "8": "segment has data element errors",
}
_ELEMENT_CODES = {
    "1": "required data element missing", "2": "conditional required data element missing",
    "3": "too many data elements", "4": "data element too short", "5": "data element too long",
    "6": "invalid character in data element", "7": "invalid code value", "8": "invalid date",
    "9": "invalid time", "10": "exclusion condition violated", "12": "too many repetitions",
    "13": "too many components", "I10": "implementation not used data element present",
    "I12": "implementation pattern match failure", "I13": "implementation situational data element missing",
    "I6": "code value not used in implementation", "I9": "implementation dependent data element missing",
}


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One thing pyx12 found wrong: where (segment, position, element), its code and what it means."""

    segment_id: str  # "NM1", "SE", "ISA"...
    position: int | None  # 1-based segment number in the file (None when pyx12 gives none)
    element: str | None  # e.g. "NM109", "SE01"; None for a segment-level issue
    code: str  # the 999 / pyx12 error code (IK304, IK403, IK502, AK905 or TA1 code)
    message: str  # never the value at fault
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.segment_id}" + (f" (segment {self.position})" if self.position else "")
        return f"{where}{' ' + self.element if self.element else ''}: {self.message} [{self.code}]"


def validate(text: str) -> list[ValidationIssue]:
    """Every problem found in ``text``; no issue of severity ``error`` means the file may go out.

    A file whose guide pyx12 has a map for is checked by pyx12 in full. Any other file (the 270 of
    005010X279A1) is checked for its envelope only (ISA..IEA, ST/SE counts and control numbers, by
    :func:`mappings.x12.reader.read_interchanges`) and gets one ``map-not-available`` warning.
    """
    try:
        parsed = read_interchanges(text)
    except X12SyntaxError as exc:
        return [ValidationIssue("ISA", exc.position, None, exc.rule, str(exc))]
    versions = {group.version for interchange in parsed.interchanges for group in interchange.groups}
    if not versions:
        return [ValidationIssue("GS", None, None, "x12.missing-gs", "no functional group (GS) in the file")]
    if not versions <= SUPPORTED_VERSIONS:
        issues = [ValidationIssue(e.segment_id, e.position, f"{e.segment_id}{e.element:02d}" if e.element else None,
                                  e.rule, e.message) for e in parsed.errors]
        for version in sorted(versions - SUPPORTED_VERSIONS):
            issues.append(ValidationIssue("GS", None, "GS08", "map-not-available",
                                          f"pyx12 has no map for {version}: only the envelope was checked",
                                          severity="warning"))
        return issues
    return _pyx12_issues(text)


def _pyx12_issues(text: str) -> list[ValidationIssue]:
    import pyx12.x12n_document  # imported here: loading pyx12 and its maps is slow and only export needs it

    report = io.StringIO()
    with _quiet_pyx12():
        try:
            ok = pyx12.x12n_document.x12n_document(_params(), io.StringIO(text), io.StringIO(), None,
                                                   fd_json=report)
        except Exception as exc:  # pyx12 raises EngineError and others on files it cannot walk at all
            return [ValidationIssue("ISA", None, None, "unreadable",
                                    f"pyx12 could not read the file ({type(exc).__name__})")]
    issues = list(_issues(json.loads(report.getvalue() or '{"interchanges": []}')))
    if not ok and not issues:
        issues.append(ValidationIssue("ISA", None, None, "invalid", "pyx12 rejected the file without naming an error"))
    return issues


def _params() -> Any:
    """pyx12's defaults (extended character set), without the config files it would read from disk."""
    import pyx12.params

    return pyx12.params.ParamsBase()


@contextlib.contextmanager
def _quiet_pyx12() -> Iterator[None]:
    """Nothing pyx12 logs or prints (it may quote segments) reaches a handler or stdout."""
    names = ["pyx12", *(name for name in logging.root.manager.loggerDict if name.startswith("pyx12."))]
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.disabled))
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
        logger.disabled = True
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def _redact(message: str, value: Any) -> str:
    if isinstance(value, str) and value.strip():
        message = message.replace(value, "…")
    return message


#: transaction-set level codes (999 IK502) that are about the SE trailer: code -> element
_SE_CODES = {"3": "SE02", "4": "SE01"}


def _control_issues(segment_id: str, node: dict[str, Any]) -> Iterator[ValidationIssue]:
    for error in node.get("errors", []):
        code = str(error.get("err_cde", ""))
        element = _SE_CODES.get(code) if segment_id == "ST" else None
        yield ValidationIssue("SE" if element else segment_id, node.get("cur_line"), element, code,
                              _no_data(str(error.get("err_str", "")), code))


def _no_data(message: str, code: str) -> str:
    """pyx12 quotes segments (``Segment N3*12 Elm St not found``): keep only where it looked."""
    if "*" not in message:
        return message
    meaning = _SEGMENT_CODES.get(code, "segment error")
    found = re.search(r"Started at (\S+)", message)
    return f"{meaning} (looked for after {found.group(1)})" if found else meaning


def _issues(doc: dict[str, Any]) -> Iterator[ValidationIssue]:
    for isa in doc.get("interchanges", []):
        yield from _control_issues("ISA", isa)
        for gs in isa.get("groups", []):
            yield from _control_issues("GS", gs)
            for st in gs.get("transactions", []):
                yield from _control_issues("ST", st)
                for seg in st.get("segments", []):
                    yield from _segment_issues(seg)


def _segment_issues(seg: dict[str, Any]) -> Iterator[ValidationIssue]:
    seg_id = str(seg.get("seg_id") or "")
    position = seg.get("seg_count") or seg.get("cur_line")
    for error in seg.get("errors", []):
        code = str(error.get("err_cde", ""))
        message = _no_data(_redact(str(error.get("err_str") or _SEGMENT_CODES.get(code, "segment error")),
                                   error.get("err_val")), code)
        yield ValidationIssue(seg_id, position, None, code, message)
    for ele in seg.get("elements", []):
        element = f"{seg_id}{int(ele['ele_pos']):02d}" if ele.get("ele_pos") else None
        if element and ele.get("subele_pos"):
            element += f"-{ele['subele_pos']}"
        for error in ele.get("errors", []):
            code = str(error.get("err_cde", ""))
            meaning = _ELEMENT_CODES.get(code, "data element error")
            name = str(ele.get("name") or "")
            yield ValidationIssue(seg_id, position, element, code, f"{name}: {meaning}" if name else meaning)

"""Reading a whole acknowledgement file: every TA1, 999 (or 997) and 277CA in it, each on its own.

:func:`read_acknowledgements` never raises: a file that is not X12 at all, an envelope problem (a GE
count, a missing IEA) or a transaction set that is not an acknowledgement becomes an
:class:`Unread` document carrying the :class:`X12Error` list (segment, position, rule), and every
other document of the file is still read. A broken 999 or 277CA (no SE, wrong count, truncated) is
read as far as it goes and carries its errors in its own ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mappings.x12.read277 import ClaimAckReport, read_277
from mappings.x12.read999 import AckReport, InterchangeAck, read_999, read_ta1
from mappings.x12.reader import TransactionSet, X12Error, X12SyntaxError, read_interchanges

CLAIM_ACK_VERSION = "005010X214"


@dataclass(frozen=True, slots=True)
class Unread:
    """What could not be read as an acknowledgement, and why."""

    set_id: str  # ST01, '' for a problem of the envelope or of the whole file
    control_number: str  # ST02, ''
    errors: tuple[X12Error, ...]


AckDocument = InterchangeAck | AckReport | ClaimAckReport | Unread


def _transaction(ts: TransactionSet) -> AckDocument:
    if ts.id in ("999", "997"):
        return read_999(ts)
    if ts.id == "277" and (not ts.version or ts.version.startswith(CLAIM_ACK_VERSION)):
        return read_277(ts)
    what = f"277 of version {ts.version}" if ts.id == "277" else f"transaction set {ts.id or '(none)'}"
    error = X12Error("x12.ack.unsupported", "ST", ts.segments[0].position,
                     f"{what} is not an acknowledgement this reader knows (TA1, 999, 277CA {CLAIM_ACK_VERSION})",
                     1, ts.control_number)
    return Unread(ts.id, ts.control_number, (error, *ts.errors))


def read_acknowledgements(text: str | bytes) -> list[AckDocument]:
    """Every TA1, 999 and 277CA of ``text`` in file order, then one :class:`Unread` for envelope problems."""
    try:
        x12 = read_interchanges(text)
    except X12SyntaxError as exc:
        return [Unread("", "", (X12Error(exc.rule, "ISA", exc.position, str(exc)),))]
    documents: list[AckDocument] = []
    for interchange in x12.interchanges:
        documents.extend(read_ta1(seg) for seg in interchange.acknowledgements)
        for group in interchange.groups:
            documents.extend(_transaction(ts) for ts in group.transactions)
    envelope = tuple(error for error in x12.errors if error.transaction is None)
    if envelope:
        documents.append(Unread("", "", envelope))
    return documents

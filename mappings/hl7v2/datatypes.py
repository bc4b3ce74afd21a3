"""HL7 v2 data types <-> FHIR data types: identifiers (CX, EI, HD), names (XPN, XCN), telecom
(XTN), addresses (XAD) and dates (DT, DTM).

Readers take a :class:`~mappings.hl7v2.syntax.V2Segment` and a field position and raise
:class:`~mappings.hl7v2.errors.Hl7Error` (102 data type error) with the exact location; writers
return the nested component lists that :class:`~mappings.hl7v2.syntax.Writer` encodes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from mappings.hl7v2 import tables
from mappings.hl7v2.errors import DATA_TYPE_ERROR, Hl7Error
from mappings.hl7v2.syntax import V2Segment

__all__ = [
    "authority_system",
    "fhir_date",
    "fhir_datetime",
    "parse_dtm",
    "system_authority",
    "v2_date",
    "v2_dtm",
]

_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?")


# ------------------------------------------------------------------------------------ identifiers


def authority_system(namespace: str, universal: str = "", universal_type: str = "") -> str | None:
    """Identifier.system of an assigning authority (HD): the universal id (ISO -> urn:oid:), else the
    namespace through :data:`tables.NAMESPACE_SYSTEMS`, else a hub URI made of the namespace."""
    if universal:
        kind = universal_type.upper()
        if kind == "ISO" and not universal.startswith("urn:oid:"):
            return f"urn:oid:{universal}"
        if kind == "UUID" and not universal.startswith("urn:uuid:"):
            return f"urn:uuid:{universal.lower()}"
        return universal
    if namespace:
        known = tables.NAMESPACE_SYSTEMS.get(namespace.upper())
        if known:
            return known
        return tables.NAMESPACE_SYSTEM_BASE + _uri_safe(namespace)
    return None


def system_authority(system: str | None) -> list[str]:
    """The HD subcomponents (namespace, universal id, universal id type) of an Identifier.system."""
    if not system:
        return []
    for namespace, known in tables.NAMESPACE_SYSTEMS.items():
        if known == system:
            return [namespace]
    if system.startswith(tables.NAMESPACE_SYSTEM_BASE):
        rest = system[len(tables.NAMESPACE_SYSTEM_BASE) :]
        if rest and _uri_safe(rest) == rest and "%" not in rest:
            return [rest]
    if system.startswith("urn:oid:"):
        return ["", system[len("urn:oid:") :], "ISO"]
    return ["", system, "URI"]


def _uri_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._~-]", lambda m: "%" + "%".join(f"{b:02X}" for b in m.group().encode()), text)


def read_cx(seg: V2Segment, n: int, rep: int, default_namespace: str) -> tuple[str | None, str, str]:
    """(system, value, type code) of CX field ``n`` repetition ``rep``."""
    value = seg.get(n, rep, 1)
    hd = seg.subcomponents(n, rep, 4)
    hd += [""] * (3 - len(hd))
    system = authority_system(hd[0], hd[1], hd[2]) or authority_system(default_namespace)
    return system, value, seg.get(n, rep, 5)


def cx(value: str, system: str | None, type_code: str = "") -> list[Any]:
    return [value, "", "", system_authority(system), type_code]


def read_ei(seg: V2Segment, n: int, default_namespace: str, rep: int = 1) -> tuple[str | None, str]:
    """(system, value) of EI field ``n`` (entity id ^ namespace ^ universal id ^ universal id type)."""
    c = seg.components(n, rep) + [""] * 4
    return authority_system(c[1], c[2], c[3]) or authority_system(default_namespace), c[0]


def ei(value: str, system: str | None) -> list[Any]:
    return [value, *system_authority(system)]


# ------------------------------------------------------------------------------------------ names


def read_xpn(seg: V2Segment, n: int, rep: int = 1, offset: int = 0) -> tuple[str, list[str], list[str]]:
    """(family, given names, prefixes) of an XPN (``offset`` 1 for an XCN, whose name starts at .2)."""
    family = seg.get(n, rep, 1 + offset, 1)
    given = [seg.get(n, rep, 2 + offset)]
    given += seg.get(n, rep, 3 + offset).split()
    prefix = seg.get(n, rep, 5 + offset)
    return family, [g for g in given if g], [prefix] if prefix else []


def xpn(family: str, given: list[str], prefix: str = "") -> list[Any]:
    return [family, given[0] if given else "", " ".join(given[1:]), "", prefix]


# ---------------------------------------------------------------------------------------- telecom


def read_xtn(seg: V2Segment, n: int, rep: int) -> dict[str, str] | None:
    """A FHIR ContactPoint from an XTN repetition (phone, fax or email), or None when empty."""
    c = seg.components(n, rep) + [""] * 12
    use_code, equipment = c[1].upper(), c[2].upper()
    if equipment in ("INTERNET", "X.400") or use_code == "NET":
        email = c[3] or c[0]
        return {"system": "email", "value": email} if email else None
    number = c[11] or c[0]
    if not number and (c[5] or c[6]):
        number = "".join(
            p for p in (c[4] and f"+{c[4]} ", c[5] and f"({c[5]}) ", c[6], c[7] and f" x{c[7]}") if p
        )
    if not number:
        return None
    point = {"system": "fax" if equipment == "FX" else "phone", "value": number}
    use = {"PRN": "home", "WPN": "work", "ORN": "mobile", "PRS": "mobile"}.get(use_code)
    if equipment == "CP":
        use = "mobile"
    if use:
        point["use"] = use
    return point


def xtn(point: dict[str, Any]) -> list[Any]:
    system, value, use = point.get("system"), str(point.get("value") or ""), point.get("use")
    if system == "email":
        return ["", "NET", "Internet", value]
    use_code = {"home": "PRN", "work": "WPN", "mobile": "ORN"}.get(use or "", "")
    equipment = "FX" if system == "fax" else ("CP" if use == "mobile" else "PH")
    return [value, use_code, equipment]


# -------------------------------------------------------------------------------------- addresses


def read_xad(seg: V2Segment, n: int, rep: int) -> dict[str, Any] | None:
    c = seg.components(n, rep) + [""] * 7
    line = [seg.get(n, rep, 1, 1), c[1]]
    address: dict[str, Any] = {}
    if any(line):
        address["line"] = [x for x in line if x]
    for key, value in (("city", c[2]), ("state", c[3]), ("postalCode", c[4]), ("country", c[5])):
        if value:
            address[key] = value
    use = {"H": "home", "B": "work", "O": "work", "C": "temp", "M": "home"}.get(c[6].upper())
    if use and address:
        address["use"] = use
    return address or None


def xad(address: dict[str, Any]) -> list[Any]:
    lines = list(address.get("line") or [])
    use = {"home": "H", "work": "B", "temp": "C"}.get(address.get("use") or "", "")
    return [
        lines[0] if lines else "",
        " ".join(lines[1:]),
        address.get("city", ""),
        address.get("state", ""),
        address.get("postalCode", ""),
        address.get("country", ""),
        use,
    ]


# ------------------------------------------------------------------------------------------ dates


def parse_dtm(text: str) -> tuple[datetime, int, bool]:
    """(value, number of digits given, has offset) of a DTM; ValueError when it is not one.

    The value is naive UTC when an offset is given, else naive local time of the sender.
    """
    match = _DTM.fullmatch(text)
    if not match:
        raise ValueError("not a DTM")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if (day and not month) or (hour and not day) or (minute and not hour):
        raise ValueError("not a DTM")
    digits = len(text.split(".")[0].split("+")[0].split("-")[0])
    value = datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")[:6]),
    )
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        if int(offset[1:3]) > 14 or int(offset[3:5]) > 59:
            raise ValueError("bad offset")
        value = value.replace(tzinfo=timezone(sign * delta)).astimezone(UTC).replace(tzinfo=None)
    return value, digits, bool(offset)


def read_dtm(seg: V2Segment, n: int, rep: int = 1, comp: int = 1) -> datetime | None:
    """A DTM field as naive UTC (None when empty); 102 when it is not a valid date/time."""
    text = seg.get(n, rep, comp)
    if not text:
        return None
    try:
        return parse_dtm(text)[0]
    except ValueError:
        raise Hl7Error(DATA_TYPE_ERROR, "invalid date/time", seg.loc(n, rep, comp)) from None


def fhir_date(seg: V2Segment, n: int, *, full: bool = False) -> str | None:
    """A DT / DTM field as a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD; ``full``: the day is required)."""
    text = seg.get(n)
    if not text:
        return None
    try:
        value, digits, _ = parse_dtm(text)
    except ValueError:
        raise Hl7Error(DATA_TYPE_ERROR, "invalid date", seg.loc(n)) from None
    if full and digits < 8:
        raise Hl7Error(DATA_TYPE_ERROR, "the date needs year, month and day", seg.loc(n))
    if digits >= 8:
        return value.date().isoformat()
    if digits >= 6:
        return f"{value.year:04d}-{value.month:02d}"
    return f"{value.year:04d}"


def fhir_datetime(value: datetime) -> str:
    """FHIR dateTime of a naive UTC datetime (seconds precision)."""
    return value.replace(microsecond=0).isoformat() + "Z"


def naive_utc(now: datetime) -> datetime:
    """``now`` as naive UTC (an aware value is converted; a naive one is taken as UTC already)."""
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now


def v2_dtm(value: datetime | str | None) -> str:
    """DTM of a naive UTC datetime or a FHIR dateTime/instant ("" for None)."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.replace("Z", "+00:00")
        if len(text) == 10:
            return text.replace("-", "")
        if len(text) in (4, 7):
            return text.replace("-", "")
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        value = parsed
    return value.strftime("%Y%m%d%H%M%S") + "+0000"


def v2_date(value: str | None) -> str:
    """DT of a FHIR date."""
    return (value or "").replace("-", "")

"""FHIR date, dateTime and instant values as the closed UTC intervals they cover (search by date)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

__all__ = ["MAX_DATE", "MIN_DATE", "date_range"]

MIN_DATE = datetime(1, 1, 1)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999)

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def date_range(text: str) -> tuple[datetime, datetime]:
    """The closed UTC interval that a FHIR date, dateTime or instant of any precision covers.

    Raises ValueError for text that is not such a value.
    """
    match = _DATE.match(text.strip())
    if not match:
        raise ValueError("not a FHIR date, dateTime or instant")
    g = match.groupdict()
    year = int(g["year"])
    if g["month"] is None:
        return datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
    month = int(g["month"])
    if g["day"] is None:
        start = datetime(year, month, 1)
        end = datetime(year + (month == 12), month % 12 + 1, 1) - timedelta(microseconds=1)
        return start, end
    day = int(g["day"])
    if g["hour"] is None:
        start = datetime(year, month, day)
        return start, start + timedelta(days=1, microseconds=-1)
    hour, minute = int(g["hour"]), int(g["minute"])
    if g["second"] is None:
        start = datetime(year, month, day, hour, minute)
        width = timedelta(minutes=1)
    elif g["fraction"]:
        micro = int((g["fraction"][1:] + "000000")[:6])
        start = datetime(year, month, day, hour, minute, int(g["second"]), micro)
        width = timedelta(microseconds=1)
    else:
        start = datetime(year, month, day, hour, minute, int(g["second"]))
        width = timedelta(seconds=1)
    tz = g["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        try:  # in UTC the value may fall outside year 1..9999: not representable, so not a date here
            start -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        except OverflowError:
            raise ValueError("date outside the supported range") from None
    return start, start + (width - timedelta(microseconds=1))

"""Business calendars: opening hours, working days and public holidays, per region.

Business time is working time: with 09:00-17:00, one business day is eight working
hours, so Monday 09:00 + "2 business days" is Tuesday 17:00 and Tuesday 17:00 +
"1 business hour" is Wednesday 10:00. Arithmetic runs on local wall-clock time, so
it is right across daylight-saving changes. A calendar open while the clocks change
(say 00:00-23:59) also counts by the wall clock: a result is always a real instant
never before the start, but a first step that stops inside the skipped hour is moved
past it, so adding in two steps can then differ from adding at once by that hour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

_MAX_DAYS_SEARCHED = 366 * 2
_US_PER_MINUTE = 60 * 1_000_000
_US_PER_HOUR = 60 * _US_PER_MINUTE
# What a day is: closed, open with one UTC offset throughout, or open while the clocks change.
_CLOSED, _OPEN, _OPEN_ACROSS_DST = 0, 1, 2

_PART = re.compile(r"([0-9]+)\s*(?:business\s+|working\s+)?(day|hour|minute)s?\b", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*,\s*|\s+and\s+|\s+", re.IGNORECASE)
_DURATION_HELP = "expected amounts like '2 business days', '1 business hour', '90 minutes' or '1 day 4 hours'"


@dataclass(frozen=True, slots=True)
class BusinessDuration:
    """An amount of working time; a day is one full opening (closes - opens) of the calendar used."""

    days: int = 0
    hours: int = 0
    minutes: int = 0

    def __post_init__(self) -> None:
        if min(self.days, self.hours, self.minutes) < 0:
            raise ValueError(f"a business duration cannot be negative: {self}")

    def __add__(self, other: object) -> BusinessDuration:
        if not isinstance(other, BusinessDuration):
            return NotImplemented
        return BusinessDuration(self.days + other.days, self.hours + other.hours, self.minutes + other.minutes)


def parse_duration(text: str) -> BusinessDuration:
    """Read "2 business days", "1 business hour", "90 minutes", "1 day 4 hours" (case-insensitive)."""
    return _parse_duration(text)


@lru_cache(maxsize=256)
def _parse_duration(text: str) -> BusinessDuration:
    amounts: dict[str, int] = {}
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"empty duration: {_DURATION_HELP}")
    pos = 0
    while True:
        part = _PART.match(stripped, pos)
        if part is None:
            raise ValueError(f"cannot read duration {text!r}: {_DURATION_HELP}")
        unit = part.group(2).lower()
        if unit in amounts:
            raise ValueError(f"duration {text!r} gives {unit}s twice")
        amounts[unit] = int(part.group(1))
        pos = part.end()
        if pos == len(stripped):
            break
        separator = _SEPARATOR.match(stripped, pos)
        if separator is None:
            raise ValueError(f"cannot read duration {text!r}: {_DURATION_HELP}")
        pos = separator.end()
    if not any(amounts.values()):
        raise ValueError(f"duration must be more than zero, got {text!r}")
    return BusinessDuration(amounts.get("day", 0), amounts.get("hour", 0), amounts.get("minute", 0))


@lru_cache(maxsize=512)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[int]:
    """Ordinals of one year's public holidays; shared by every calendar of that region."""
    return frozenset(d.toordinal() for d in holidays.country_holidays(country, subdiv=subdivision, years=year))


def _us(t: time) -> int:
    """Microseconds since midnight."""
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Opening hours on working days in one time zone, closed on public and extra holidays."""

    timezone: str
    working_days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = frozenset()
    # Derived so the hot path does integer arithmetic on (day ordinal, microsecond of the day).
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _open_us: int = field(init=False, repr=False, compare=False)
    _close_us: int = field(init=False, repr=False, compare=False)
    _days: dict[int, int] = field(init=False, repr=False, compare=False, default_factory=dict)  # ordinal -> _CLOSED..

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"unknown time zone {self.timezone!r} (expected an IANA name like 'Europe/London')"
            ) from None
        if self.opens.tzinfo is not None or self.closes.tzinfo is not None:
            raise ValueError("opening hours are local wall-clock times: give opens/closes without a tzinfo")
        if self.opens >= self.closes:
            raise ValueError(f"opening time {self.opens} must be before closing time {self.closes}")
        if not self.working_days or not self.working_days <= frozenset(range(7)):
            raise ValueError(f"working_days must name at least one day, Monday=0 .. Sunday=6, got {self.working_days}")
        if self.subdivision is not None and self.country is None:
            raise ValueError(f"subdivision {self.subdivision!r} needs a country")
        if self.country is not None:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision)  # validates without building a year
            except NotImplementedError as exc:
                raise ValueError(f"unknown holiday calendar {self.country}/{self.subdivision}: {exc}") from None
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_open_us", _us(self.opens))
        object.__setattr__(self, "_close_us", _us(self.closes))

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def _fill_year(self, ordinal: int) -> None:
        """Classify every day of the year holding `ordinal` at once (holiday tables come per year)."""
        year = date.fromordinal(ordinal).year
        closed = {d.toordinal() for d in self.extra_holidays if d.year == year}
        if self.country is not None:
            closed |= _public_holidays(self.country, self.subdivision, year)
        for o in range(date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal() + 1):
            if (o - 1) % 7 not in self.working_days or o in closed:  # ordinal 1 was a Monday
                self._days[o] = _CLOSED
                continue
            day = date.fromordinal(o)
            offsets = {
                datetime.combine(day, t, self._zone).replace(fold=fold).utcoffset()
                for t in (self.opens, self.closes)
                for fold in (0, 1)
            }
            self._days[o] = _OPEN if len(offsets) == 1 else _OPEN_ACROSS_DST

    def _is_business(self, ordinal: int) -> bool:
        state = self._days.get(ordinal)
        if state is None:
            self._fill_year(ordinal)
            state = self._days[ordinal]
        return state != _CLOSED

    def _next_business(self, ordinal: int) -> int:
        """The first business day after `ordinal`, skipping whole days."""
        for o in range(ordinal + 1, ordinal + 1 + _MAX_DAYS_SEARCHED):
            if self._is_business(o):
                return o
        raise ValueError(f"no business day within {_MAX_DAYS_SEARCHED} days after {date.fromordinal(ordinal)}")

    def _wall(self, at: datetime) -> tuple[int, int, int]:
        """(day ordinal, microsecond of the day, fold) of `at` on this calendar's wall clock."""
        if at.tzinfo is None:
            raise ValueError(f"a business calendar needs timezone-aware datetimes, got naive {at.isoformat()}")
        w = at.astimezone(self._zone)
        return w.toordinal(), ((w.hour * 60 + w.minute) * 60 + w.second) * 1_000_000 + w.microsecond, w.fold

    def _instant(self, ordinal: int, us: int, fold: int = 0) -> datetime:
        """The aware datetime at a wall-clock position on a business day."""
        d = date.fromordinal(ordinal)
        seconds, micro = divmod(us, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        wall = datetime(d.year, d.month, d.day, hour, minute, second, micro, self._zone, fold=fold)
        if self._days[ordinal] == _OPEN:
            return wall
        return wall.astimezone(UTC).astimezone(self._zone)  # a skipped wall time maps forward; fold set right

    def is_business_day(self, day: date) -> bool:
        return self._is_business(day.toordinal())

    def is_open(self, at: datetime) -> bool:
        """Within opening hours on a business day; the closing instant counts as open."""
        ordinal, us, _ = self._wall(at)
        return self._open_us <= us <= self._close_us and self._is_business(ordinal)

    def next_open(self, at: datetime) -> datetime:
        """`at` itself when open and before closing, else the next opening instant."""
        ordinal, us, _ = self._wall(at)
        if self._is_business(ordinal) and us < self._close_us:
            return at.astimezone(self._zone) if us >= self._open_us else self._instant(ordinal, self._open_us)
        return self._instant(self._next_business(ordinal), self._open_us)

    def add_business_time(self, start: datetime, duration: BusinessDuration | str) -> datetime:
        """`start` plus `duration` of working time, as an aware datetime in this calendar's zone."""
        if isinstance(duration, str):
            duration = parse_duration(duration)
        ordinal, us, fold = self._wall(start)
        open_us, close_us = self._open_us, self._close_us
        day_us = close_us - open_us
        remaining = duration.days * day_us + duration.hours * _US_PER_HOUR + duration.minutes * _US_PER_MINUTE
        if remaining == 0:  # due at once when open (closing instant included), so adding nothing changes nothing
            if open_us <= us <= close_us and self._is_business(ordinal):
                return start.astimezone(self._zone)
            return self.next_open(start)
        # A start outside opening hours rolls forward; at the closing instant no working time is left that day.
        if self._is_business(ordinal) and us < close_us:
            if us < open_us:
                us, fold = open_us, 0
        else:
            ordinal, us, fold = self._next_business(ordinal), open_us, 0
        left_today = close_us - us
        if remaining <= left_today:
            # Keep the start's fold so a start in a repeated (DST fall-back) hour never goes back in time.
            return self._instant(ordinal, us + remaining, fold)
        remaining -= left_today
        ordinal = self._next_business(ordinal)
        while remaining > day_us:
            remaining -= day_us
            ordinal = self._next_business(ordinal)
        return self._instant(ordinal, open_us + remaining)

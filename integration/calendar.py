"""Business calendars: opening hours, working days and public holidays, per region.

Business time is working time: with 09:00-17:00, one business day is eight working
hours, so Monday 09:00 + "2 business days" is Tuesday 17:00 and Tuesday 17:00 +
"1 business hour" is Wednesday 10:00. Arithmetic runs on local wall-clock time, so
it is right across daylight-saving changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

_MAX_DAYS_SEARCHED = 366 * 2
_UNIT = re.compile(r"\s*(\d+)\s*(?:business\s+|working\s+)?(days?|hours?|h|minutes?|mins?|m)\b\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BusinessDuration:
    days: int = 0
    hours: int = 0
    minutes: int = 0

    def __add__(self, other: BusinessDuration) -> BusinessDuration:
        return BusinessDuration(self.days + other.days, self.hours + other.hours, self.minutes + other.minutes)

    def working_minutes(self, day_minutes: int) -> int:
        return self.days * day_minutes + self.hours * 60 + self.minutes


def parse_duration(text: str) -> BusinessDuration:
    """Read "2 business days", "1 business hour", "1 day 4 hours", "90 minutes"."""
    days = hours = minutes = 0
    pos = 0
    while pos < len(text):
        match = _UNIT.match(text, pos)
        if match is None:
            raise ValueError(f"cannot read duration {text!r} (try '2 business days' or '1 business hour')")
        n, unit = int(match.group(1)), match.group(2).lower()
        if unit.startswith("d"):
            days += n
        elif unit.startswith("h"):
            hours += n
        else:
            minutes += n
        pos = match.end()
    if days + hours + minutes <= 0:
        raise ValueError(f"duration must be more than zero: {text!r}")
    return BusinessDuration(days, hours, minutes)


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    timezone: str
    working_days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    country: str | None = None
    subdivision: str | None = None
    extra_holidays: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _years: dict[int, frozenset[date]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        object.__setattr__(self, "_zone", zone)
        if self.opens >= self.closes:
            raise ValueError(f"opening time {self.opens} must be before closing time {self.closes}")
        if not self.working_days or not self.working_days <= set(range(7)):
            raise ValueError("working_days must name at least one day, Monday=0 .. Sunday=6")
        if self.subdivision and not self.country:
            raise ValueError("a subdivision needs a country")
        self._holidays(2026)  # fail now on an unknown country or subdivision

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    def _holidays(self, year: int) -> frozenset[date]:
        cached = self._years.get(year)
        if cached is None:
            found: set[date] = set()
            if self.country:
                try:
                    found = set(holidays.country_holidays(self.country, subdiv=self.subdivision, years=year))
                except NotImplementedError as exc:
                    raise ValueError(f"unknown holiday calendar {self.country}/{self.subdivision}: {exc}") from None
            cached = frozenset(found | {d for d in self.extra_holidays if d.year == year})
            self._years[year] = cached
        return cached

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and day not in self._holidays(day.year)

    def _next_business_day(self, day: date) -> date:
        for _ in range(_MAX_DAYS_SEARCHED):
            day += timedelta(days=1)
            if self.is_business_day(day):
                return day
        raise ValueError(f"no business day within {_MAX_DAYS_SEARCHED} days after {day}")

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError("a business calendar needs timezone-aware datetimes")
        return at.astimezone(self._zone).replace(tzinfo=None)

    def _aware(self, wall: datetime) -> datetime:
        return wall.replace(tzinfo=self._zone)

    def is_open(self, at: datetime) -> bool:
        """Within opening hours on a business day (the closing instant counts as open)."""
        wall = self._local(at)
        return self.is_business_day(wall.date()) and self.opens <= wall.time() <= self.closes

    def next_open(self, at: datetime) -> datetime:
        """`at` itself when open, else the next opening instant."""
        wall = self._local(at)
        day, t = wall.date(), wall.time()
        if self.is_business_day(day) and self.opens <= t <= self.closes:
            return at.astimezone(self._zone)
        if not self.is_business_day(day) or t > self.closes:
            day = self._next_business_day(day)
        return self._aware(datetime.combine(day, self.opens))

    def add_business_time(self, start: datetime, duration: BusinessDuration | str) -> datetime:
        """`start` plus `duration` of working time, as an aware datetime in this calendar's zone."""
        if isinstance(duration, str):
            duration = parse_duration(duration)
        day_minutes = _minutes(self.closes) - _minutes(self.opens)
        remaining = timedelta(minutes=duration.working_minutes(day_minutes))
        if remaining <= timedelta(0):
            return self.next_open(start)
        wall = self._local(start)
        day = wall.date()
        opens, closes = datetime.combine(day, self.opens), datetime.combine(day, self.closes)
        if not self.is_business_day(day) or wall >= closes:
            day = self._next_business_day(day)
            cursor = datetime.combine(day, self.opens)
        else:
            cursor = max(wall, opens)
        left_today = datetime.combine(day, self.closes) - cursor
        if remaining <= left_today:
            return self._aware(cursor + remaining)
        remaining -= left_today
        full_day = timedelta(minutes=day_minutes)
        day = self._next_business_day(day)
        while remaining > full_day:
            remaining -= full_day
            day = self._next_business_day(day)
        return self._aware(datetime.combine(day, self.opens) + remaining)

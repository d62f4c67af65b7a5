"""The business calendar: working-time arithmetic over opening hours, weekends, holidays and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integration.calendar import BusinessCalendar, BusinessDuration, parse_duration

SYDNEY = ZoneInfo("Australia/Sydney")
WARSAW = ZoneInfo("Europe/Warsaw")
# Weekday extra holidays in every year tested, so results meet them often.
EXTRAS = frozenset(date(y, m, d) for y in range(2020, 2032) for m, d in ((3, 3), (7, 1), (9, 15), (12, 31)))

CALENDARS = [
    BusinessCalendar("Australia/Sydney", country="AU", subdivision="NSW", extra_holidays=EXTRAS),
    BusinessCalendar("Pacific/Auckland", country="NZ"),
    BusinessCalendar("Europe/Warsaw", country="PL", extra_holidays=EXTRAS),
    BusinessCalendar("America/Los_Angeles", country="US", subdivision="CA", opens=time(7, 45), closes=time(19, 15)),
    BusinessCalendar("Europe/London", country="GB", subdivision="ENG", opens=time(8, 30), closes=time(17, 30)),
    BusinessCalendar("Asia/Dubai", working_days=frozenset({0, 1, 2, 3, 6}), opens=time(10, 0), closes=time(14, 0)),
]

starts = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.timezones())
durations = st.builds(
    BusinessDuration, days=st.integers(0, 10), hours=st.integers(0, 12), minutes=st.integers(0, 120)
).filter(lambda d: d != BusinessDuration())
calendars = st.sampled_from(CALENDARS)


@cache
def _public(cal: BusinessCalendar) -> holidays.HolidayBase | frozenset[date]:
    return holidays.country_holidays(cal.country, subdiv=cal.subdivision) if cal.country else frozenset()


def assert_open(cal: BusinessCalendar, at: datetime) -> None:
    """Checked against the holidays package directly, not through the calendar's own tables."""
    assert isinstance(at.tzinfo, ZoneInfo) and at.tzinfo.key == cal.timezone
    local = at.astimezone(ZoneInfo(cal.timezone))
    assert local.weekday() in cal.working_days, local
    assert local.date() not in _public(cal), local
    assert local.date() not in cal.extra_holidays, local
    assert cal.opens <= local.time() <= cal.closes, local


def brute_force(cal: BusinessCalendar, start: datetime, minutes: int) -> datetime:
    """The spec, minute by minute on the local wall clock (skipping only stretches that are closed)."""
    zone = ZoneInfo(cal.timezone)
    cursor = start.astimezone(zone).replace(tzinfo=None)
    while True:
        midnight = datetime.combine(cursor.date(), time())
        day = cursor.date()
        if day.weekday() not in cal.working_days or day in _public(cal) or day in cal.extra_holidays:
            cursor = midnight + timedelta(days=1)
        elif cursor.time() < cal.opens:
            cursor = datetime.combine(day, cal.opens)
        elif cursor.time() >= cal.closes:
            cursor = midnight + timedelta(days=1)
        else:
            cursor += timedelta(minutes=1)
            minutes -= 1
            if minutes == 0:
                return cursor.replace(tzinfo=zone)


def working_minutes(cal: BusinessCalendar, d: BusinessDuration) -> int:
    day = datetime.combine(date.min, cal.closes) - datetime.combine(date.min, cal.opens)
    return d.days * int(day.total_seconds()) // 60 + d.hours * 60 + d.minutes


# -- invariants ---------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(calendars, starts, durations)
def test_due_is_after_start_and_open(cal: BusinessCalendar, start: datetime, duration: BusinessDuration) -> None:
    due = cal.add_business_time(start, duration)
    assert due.astimezone(UTC) > start.astimezone(UTC)
    assert_open(cal, due)
    assert cal.is_open(due)
    assert cal.next_open(start).astimezone(UTC) < due.astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(calendars, starts, durations, durations)
def test_adding_in_two_steps_equals_adding_at_once(
    cal: BusinessCalendar, start: datetime, a: BusinessDuration, b: BusinessDuration
) -> None:
    stepwise = cal.add_business_time(cal.add_business_time(start, a), b)
    assert stepwise.astimezone(UTC) == cal.add_business_time(start, a + b).astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(calendars, starts, st.integers(1, 2 * 8 * 60))
def test_matches_minute_by_minute_counting(cal: BusinessCalendar, start: datetime, minutes: int) -> None:
    start = start.replace(second=0, microsecond=0)  # the brute force counts whole minutes
    due = cal.add_business_time(start, BusinessDuration(minutes=minutes))
    assert due.astimezone(UTC) == brute_force(cal, start, minutes).astimezone(UTC)


@settings(max_examples=300, deadline=None)
@given(calendars, starts, durations)
def test_the_start_time_zone_does_not_matter(
    cal: BusinessCalendar, start: datetime, duration: BusinessDuration
) -> None:
    due = cal.add_business_time(start, duration)
    assert cal.add_business_time(start.astimezone(UTC), duration) == due
    assert working_minutes(cal, duration) > 0


@settings(max_examples=300, deadline=None)
@given(calendars, starts)
def test_next_open_is_open_and_not_before(cal: BusinessCalendar, at: datetime) -> None:
    nxt = cal.next_open(at)
    assert nxt.astimezone(UTC) >= at.astimezone(UTC)
    assert_open(cal, nxt)
    if nxt.astimezone(UTC) != at.astimezone(UTC):  # rolled forward: lands on an opening time
        assert nxt.time() == cal.opens


# -- examples (AU/NSW, 09:00-17:00 in Sydney unless said) -----------------------------------------------------------

AU = BusinessCalendar("Australia/Sydney", country="AU", subdivision="NSW")


def syd(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SYDNEY)


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        (syd(2026, 3, 9, 9), "2 business days", syd(2026, 3, 10, 17)),  # Monday 09:00 -> Tuesday 17:00
        (syd(2026, 3, 10, 17), "1 business hour", syd(2026, 3, 11, 10)),  # closing instant has nothing left
        (syd(2026, 3, 13, 16), "2 business hours", syd(2026, 3, 16, 10)),  # Friday 16:00 -> Monday 10:00
        (syd(2026, 3, 14, 11), "1 business hour", syd(2026, 3, 16, 10)),  # Saturday rolls to Monday 09:00
        (syd(2026, 3, 15, 23, 59), "30 minutes", syd(2026, 3, 16, 9, 30)),
        (syd(2026, 3, 16, 6), "1 day", syd(2026, 3, 16, 17)),  # before opening rolls to the same day's opening
        (syd(2026, 3, 11, 16, 30), "1 business hour", syd(2026, 3, 12, 9, 30)),
        (syd(2026, 3, 11, 16, 30), "1 day 4 hours", syd(2026, 3, 13, 12, 30)),
        (syd(2026, 4, 2, 16), "2 business hours", syd(2026, 4, 7, 10)),  # Good Friday .. Easter Monday
        (syd(2026, 12, 24, 16), "2 business hours", syd(2026, 12, 29, 10)),  # Christmas, Boxing Day observed
        (syd(2026, 1, 23, 16), "2 business hours", syd(2026, 1, 27, 10)),  # Australia Day
    ],
)
def test_au_examples(start: datetime, duration: str, due: datetime) -> None:
    got = AU.add_business_time(start, duration)
    assert got.astimezone(UTC) == due.astimezone(UTC)
    assert got.tzinfo is SYDNEY or getattr(got.tzinfo, "key", None) == "Australia/Sydney"


def test_holidays_are_not_business_days() -> None:
    for day in (date(2026, 4, 3), date(2026, 4, 6), date(2026, 12, 25), date(2026, 12, 28), date(2026, 1, 26)):
        assert not AU.is_business_day(day), day
    assert AU.is_business_day(date(2026, 4, 7))
    assert not AU.is_business_day(date(2026, 3, 14))  # Saturday


def test_extra_holiday_is_skipped() -> None:
    cal = BusinessCalendar(
        "Australia/Sydney", country="AU", subdivision="NSW", extra_holidays=frozenset({date(2026, 3, 10)})
    )
    assert not cal.is_business_day(date(2026, 3, 10))
    assert cal.add_business_time(syd(2026, 3, 9, 16), "2 business hours") == syd(2026, 3, 11, 10)


def test_sydney_dst_starts_first_sunday_of_october() -> None:
    # Friday 2 Oct 2026 is AEST (+10); Monday 5 Oct is Labour Day; Tuesday 6 Oct is AEDT (+11).
    due = AU.add_business_time(syd(2026, 10, 2, 16), "2 business hours")
    assert due.astimezone(UTC) == datetime(2026, 10, 5, 23, 0, tzinfo=UTC)
    assert due.utcoffset() == timedelta(hours=11)
    # One business day from Friday 10:00 is Tuesday 10:00 on the wall clock: 95 hours later, not 96.
    start = syd(2026, 10, 2, 10)
    elapsed = AU.add_business_time(start, "1 business day").astimezone(UTC) - start.astimezone(UTC)
    assert elapsed == timedelta(hours=95)


def test_warsaw_dst_starts_last_sunday_of_march() -> None:
    pl = BusinessCalendar("Europe/Warsaw", country="PL")
    start = datetime(2026, 3, 27, 16, tzinfo=WARSAW)  # Friday, CET (+1)
    due = pl.add_business_time(start, "2 business hours")
    assert due.astimezone(UTC) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # Monday 10:00 CEST (+2)
    assert pl.add_business_time(start.astimezone(UTC), BusinessDuration(days=1)).astimezone(UTC) == datetime(
        2026, 3, 30, 14, 0, tzinfo=UTC
    )


def test_calendar_open_across_dst_changes_never_goes_back_or_names_a_missing_time() -> None:
    always = BusinessCalendar("Europe/Warsaw", working_days=frozenset(range(7)), opens=time(0), closes=time(23, 59))
    # 25 Oct 2026: 02:00-03:00 happens twice; a start in the second pass must not go back to the first.
    second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    due = always.add_business_time(second_pass, "10 minutes")
    assert due.astimezone(UTC) == datetime(2026, 10, 25, 1, 40, tzinfo=UTC)
    # 29 Mar 2026: 02:00-03:00 does not exist; 01:50 + 20 minutes of wall clock is 03:10 CEST.
    due = always.add_business_time(datetime(2026, 3, 29, 1, 50, tzinfo=WARSAW), "20 minutes")
    assert (due.hour, due.minute, due.utcoffset()) == (3, 10, timedelta(hours=2))


def test_is_open_and_next_open() -> None:
    assert AU.is_open(syd(2026, 3, 10, 9))
    assert AU.is_open(syd(2026, 3, 10, 17))  # the closing instant counts as open
    assert not AU.is_open(syd(2026, 3, 10, 17, 0, 1))
    assert not AU.is_open(syd(2026, 3, 10, 8, 59))
    assert not AU.is_open(syd(2026, 3, 14, 12))
    assert AU.next_open(syd(2026, 3, 10, 12)) == syd(2026, 3, 10, 12)
    assert AU.next_open(syd(2026, 3, 10, 7)) == syd(2026, 3, 10, 9)
    assert AU.next_open(syd(2026, 3, 10, 17)) == syd(2026, 3, 11, 9)
    assert AU.next_open(syd(2026, 3, 13, 18)) == syd(2026, 3, 16, 9)
    assert AU.next_open(datetime(2026, 3, 10, 1, tzinfo=UTC)) == syd(2026, 3, 10, 12)  # any input zone


def test_zero_duration_is_due_when_the_clock_runs() -> None:
    assert AU.add_business_time(syd(2026, 3, 10, 17), BusinessDuration()) == syd(2026, 3, 10, 17)
    assert AU.add_business_time(syd(2026, 3, 14, 12), BusinessDuration()) == syd(2026, 3, 16, 9)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 3, 10, 10)
    for call in (AU.is_open, AU.next_open, lambda at: AU.add_business_time(at, "1 hour")):
        with pytest.raises(ValueError, match="timezone-aware"):
            call(naive)


def test_search_is_bounded() -> None:
    sundays = frozenset(date(2026, 1, 4) + timedelta(weeks=w) for w in range(3 * 53))
    cal = BusinessCalendar("UTC", working_days=frozenset({6}), extra_holidays=sundays)
    with pytest.raises(ValueError, match="no business day within"):
        cal.add_business_time(datetime(2026, 1, 1, tzinfo=UTC), "1 hour")


# -- parsing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2 business days", BusinessDuration(days=2)),
        ("1 business day", BusinessDuration(days=1)),
        ("1 business hour", BusinessDuration(hours=1)),
        ("1 hour", BusinessDuration(hours=1)),
        ("3 hours", BusinessDuration(hours=3)),
        ("90 business minutes", BusinessDuration(minutes=90)),
        ("1 minute", BusinessDuration(minutes=1)),
        ("1 day 4 hours", BusinessDuration(days=1, hours=4)),
        ("2 business days 3 hours", BusinessDuration(days=2, hours=3)),
        ("1 day, 2 hours and 30 minutes", BusinessDuration(days=1, hours=2, minutes=30)),
        ("  2 BUSINESS Days  ", BusinessDuration(days=2)),
        ("4 working hours", BusinessDuration(hours=4)),
        ("0 days 5 minutes", BusinessDuration(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: BusinessDuration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("   ", "empty duration"),
        ("0 days", "more than zero"),
        ("0 hours 0 minutes", "more than zero"),
        ("-1 day", "cannot read duration"),
        ("2", "cannot read duration"),
        ("two days", "cannot read duration"),
        ("2 weeks", "cannot read duration"),
        ("2 business dayz", "cannot read duration"),
        ("1.5 hours", "cannot read duration"),
        ("1 day 4", "cannot read duration"),
        ("1 day,", "cannot read duration"),
        ("1 hour 2 hours", "hours twice"),
        ("2 business days please", "cannot read duration"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_string_and_parsed_durations_agree() -> None:
    start = syd(2026, 3, 11, 16, 30)
    assert AU.add_business_time(start, "1 day 4 hours") == AU.add_business_time(start, BusinessDuration(1, 4))


def test_durations_add_and_refuse_negatives() -> None:
    assert BusinessDuration(1, 2, 3) + BusinessDuration(hours=1) == BusinessDuration(1, 3, 3)
    with pytest.raises(ValueError, match="negative"):
        BusinessDuration(hours=-1)


# -- invalid calendars --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Europe/Atlantis"}, "unknown time zone"),
        ({"timezone": ""}, "unknown time zone"),
        ({"timezone": "UTC", "opens": time(17), "closes": time(9)}, "must be before closing"),
        ({"timezone": "UTC", "opens": time(9), "closes": time(9)}, "must be before closing"),
        ({"timezone": "UTC", "working_days": frozenset()}, "working_days"),
        ({"timezone": "UTC", "working_days": frozenset({7})}, "working_days"),
        ({"timezone": "UTC", "country": "XX"}, "unknown holiday calendar"),
        ({"timezone": "UTC", "country": "AU", "subdivision": "XYZ"}, "unknown holiday calendar"),
        ({"timezone": "UTC", "subdivision": "NSW"}, "needs a country"),
        ({"timezone": "UTC", "opens": time(9, tzinfo=UTC)}, "without a tzinfo"),
    ],
)
def test_invalid_calendars(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BusinessCalendar(**kwargs)  # type: ignore[arg-type]


def test_calendars_are_values() -> None:
    assert BusinessCalendar("Australia/Sydney", country="AU", subdivision="NSW") == AU
    assert hash(BusinessCalendar("Australia/Sydney", country="AU", subdivision="NSW")) == hash(AU)
    assert AU.zone == SYDNEY

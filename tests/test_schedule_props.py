"""Property tests of the schedule engine against two independent oracles.

1. A brute-force matcher built from the *generated structure* of each expression (not from our
   parser) walks every second of a window, applies the DST rule literally, and must produce
   exactly the chain of `next_after` results: strictly increasing, all matching, none skipped.
2. croniter in seconds-first mode (`second_at_beginning=True`) must agree in zones without DST.
   croniter decides DST differently by design (it fires fixed times twice in a repeated hour and
   moves wildcard times out of a gap), and it reads `*/1` in a day field as restricted while
   robfig (and we) read it as `*`, so those cases are left out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dkron_pkg.schedule import parse_schedule

BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Part:
    """One comma-separated element of a field, with its meaning computed independently."""

    kind: str  # "star", "value" or "range"
    a: int = 0
    b: int = 0
    step: int | None = None
    question: bool = False
    use_name: bool = False

    def values(self, low: int, high: int) -> set[int]:
        if self.kind == "star":
            return set(range(low, high + 1, self.step or 1))
        if self.kind == "value":
            return {self.a} if self.step is None else set(range(self.a, high + 1, self.step))
        return set(range(self.a, self.b + 1, self.step or 1))

    def is_star(self) -> bool:
        return self.kind == "star" and (self.step or 1) == 1

    def text(self, index: int) -> str:
        def show(v: int) -> str:
            if self.use_name and index == 4:
                return MONTHS[v - 1]
            if self.use_name and index == 5:
                return DAYS[v]
            return str(v)

        if self.kind == "star":
            body = "?" if self.question else "*"
        elif self.kind == "value":
            body = show(self.a)
        else:
            body = f"{show(self.a)}-{show(self.b)}"
        return body if self.step is None else f"{body}/{self.step}"


@st.composite
def parts(draw, index: int, dense: bool, croniter_safe: bool) -> Part:
    low, high = BOUNDS[index]
    star_weight = 6 if dense else 2
    kind = draw(st.sampled_from(["star"] * star_weight + ["value", "value", "range"]))
    step = draw(st.none() | st.integers(1, max(1, (high - low) // 2)))
    use_name = draw(st.booleans()) and index >= 4
    if kind == "star":
        question = index in (3, 5) and draw(st.booleans())
        if croniter_safe and index in (3, 5) and step == 1:
            step = None  # croniter reads */1 in a day field as restricted; robfig as *
        if croniter_safe and question:
            step = None  # croniter takes "?" only alone
        return Part("star", step=step, question=question)
    a = draw(st.integers(low, high))
    if kind == "value":
        return Part("value", a, step=step if draw(st.booleans()) else None, use_name=use_name)
    b = draw(st.integers(a + 1 if croniter_safe else a, high)) if a < high else a
    if b == a and croniter_safe:
        return Part("value", a, use_name=use_name)  # croniter reads "5-5" as the whole cycle
    return Part("range", a, b, step=step, use_name=use_name)


@dataclass
class Expr:
    fields: list[list[Part]]

    def text(self) -> str:
        return " ".join(",".join(p.text(i) for p in f) for i, f in enumerate(self.fields))

    def sets(self) -> list[set[int]]:
        return [set().union(*(p.values(*BOUNDS[i]) for p in f)) for i, f in enumerate(self.fields)]

    def hour_wildcard(self) -> bool:
        return any(p.kind == "star" or p.step is not None for p in self.fields[2])

    def matcher(self):
        sec, minute, hour, dom, month, dow = self.sets()
        days_and = any(p.is_star() for p in self.fields[3]) or any(
            p.is_star() for p in self.fields[5]
        )

        def match(wall: datetime) -> bool:
            if not (
                wall.second in sec
                and wall.minute in minute
                and wall.hour in hour
                and wall.month in month
            ):
                return False
            dom_ok = wall.day in dom
            dow_ok = wall.isoweekday() % 7 in dow
            return (dom_ok and dow_ok) if days_and else (dom_ok or dow_ok)

        return match


@st.composite
def fixed_hours(draw) -> list[Part]:
    """Hour fields without *, ? or steps, around the hours in which transitions happen (1-3)."""
    a = draw(st.integers(0, 4))
    if draw(st.booleans()):
        return [Part("value", a)] + (
            [Part("value", draw(st.integers(0, 23)))] * draw(st.booleans())
        )
    return [Part("range", a, draw(st.integers(a, 23)))]


@st.composite
def expressions(draw, dense: bool = False, croniter_safe: bool = False) -> Expr:
    fields = []
    for index in range(6):
        count = draw(st.integers(1, 3 if index < 3 else 2))
        field = [draw(parts(index, dense, croniter_safe)) for _ in range(count)]
        if dense and index == 2 and draw(st.booleans()):
            field = draw(fixed_hours())
        if dense and index >= 3 and draw(st.integers(0, 4)):
            field = [Part("star")]  # windows are short: mostly leave the days open
        if croniter_safe and len(field) > 1:
            for part in field:
                part.question = False  # croniter takes "?" only alone
            if index in (3, 5):
                # croniter lets a stepped star inside a day list ("*/2,0-5") switch its
                # day-of-month/day-of-week rule to AND; robfig (Dkron) does not.
                field = [p for p in field if p.kind != "star"] or [field[0]]
        if croniter_safe and index in (3, 5) and all(p.kind != "star" for p in field):
            low, high = BOUNDS[index]
            if set().union(*(p.values(low, high) for p in field)) == set(range(low, high + 1)):
                # croniter reads a day field that names every day ("0/1", "0-6") as "*", so
                # day-of-month AND day-of-week; robfig (Dkron) reads only "*" so.
                field = [Part("value", low)]
        fields.append(field)
    return Expr(fields)


def brute_force(expr: Expr, zone: ZoneInfo, start: int, end: int) -> list[int]:
    """Fire instants in (start, end], second by second, applying the DST rule literally."""
    match = expr.matcher()
    fixed = not expr.hour_wildcard()
    offsets: dict[int, int] = {}

    def offset(u: int) -> int:
        minute = u - u % 60  # every transition is on a whole minute
        if minute not in offsets:
            local = (EPOCH + timedelta(seconds=minute)).astimezone(zone)
            offsets[minute] = int(local.utcoffset().total_seconds())
        return offsets[minute]

    # a wall time not later than one already seen is a repeat (fall back)
    latest_wall = max(u + offset(u) for u in range(start - 4 * 3600, start + 1))
    fires = []
    prev_off = offset(start)
    epoch_naive = datetime(1970, 1, 1)
    for u in range(start + 1, end + 1):
        off = offset(u)
        wall = u + off
        fire = False
        if off > prev_off and fixed:
            gap = range(u + prev_off, wall)
            fire = any(match(epoch_naive + timedelta(seconds=w)) for w in gap)
        repeated = wall <= latest_wall
        if match(epoch_naive + timedelta(seconds=wall)) and not (repeated and fixed):
            fire = True
        if fire:
            fires.append(u)
        latest_wall = max(latest_wall, wall)
        prev_off = off
    return fires


def chain(spec: str, zone: str, start: int, end: int) -> list[int]:
    schedule = parse_schedule(spec, zone)
    out, current = [], start
    while True:
        nxt = schedule.next_after_epoch(current)
        if nxt is None or nxt > end:
            return out
        assert nxt > current
        out.append(nxt)
        current = nxt


TRANSITIONS = [  # (zone, an instant near one of its 2024 transitions)
    ("Europe/Berlin", datetime(2024, 3, 31, 1, tzinfo=UTC)),
    ("Europe/Berlin", datetime(2024, 10, 27, 1, tzinfo=UTC)),
    ("America/New_York", datetime(2024, 3, 10, 7, tzinfo=UTC)),
    ("America/New_York", datetime(2024, 11, 3, 6, tzinfo=UTC)),
    ("Australia/Sydney", datetime(2024, 4, 6, 16, tzinfo=UTC)),
    ("Australia/Sydney", datetime(2024, 10, 5, 16, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2024, 10, 5, 15, 30, tzinfo=UTC)),
    ("UTC", datetime(2024, 6, 1, tzinfo=UTC)),
]


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=expressions(dense=True),
    where=st.sampled_from(TRANSITIONS),
    shift=st.integers(-3 * 3600, 2 * 3600),
    length=st.integers(600, 3 * 3600),
)
def test_chain_equals_brute_force_around_transitions(expr, where, shift, length):
    zone, moment = where
    start = int(moment.timestamp()) + shift
    expected = brute_force(expr, ZoneInfo(zone), start, start + length)
    event("fires in window" if expected else "no fire in window")
    event("fixed hour" if not expr.hour_wildcard() else "wildcard hour")
    assert chain(expr.text(), zone, start, start + length) == expected


@settings(max_examples=150, deadline=None)
@given(
    expr=expressions(),
    zone=st.sampled_from(["UTC", "Asia/Tokyo", "Europe/Berlin", "America/New_York"]),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_fire_times_increase_and_match_in_the_zone(expr, zone, start):
    schedule = parse_schedule(expr.text(), zone)
    tz = ZoneInfo(zone)
    match = expr.matcher()
    current = start
    for _ in range(8):
        nxt = schedule.next_after(current)
        if nxt is None:
            # nothing within 5 years: the brute-force matcher agrees on a day-level scan
            local = current.astimezone(tz).replace(tzinfo=None, hour=0, minute=0, second=0)
            days = [local + timedelta(days=k) for k in range(1, 5 * 365)]
            sets = expr.sets()
            assert not any(
                match(d.replace(hour=h, minute=m, second=s))
                for d in days
                for h in list(sets[2])[:1]
                for m in list(sets[1])[:1]
                for s in list(sets[0])[:1]
            )
            return
        assert nxt > current and nxt.tzinfo is UTC and nxt.microsecond == 0
        wall = nxt.astimezone(tz).replace(tzinfo=None)
        after_gap = (
            nxt.astimezone(tz).utcoffset() > (nxt - timedelta(seconds=1)).astimezone(tz).utcoffset()
        )
        assert match(wall) or (after_gap and not expr.hour_wildcard())
        current = nxt


@settings(max_examples=200, deadline=None)
@given(
    expr=expressions(croniter_safe=True),
    zone=st.sampled_from(["UTC", "Asia/Tokyo", "Asia/Kolkata", "Africa/Nairobi"]),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_agrees_with_croniter_seconds_first(expr, zone, start):
    start = start.replace(microsecond=0)
    text = expr.text()
    ours = parse_schedule(text, zone)
    theirs = croniter(
        text,
        start.astimezone(ZoneInfo(zone)),
        second_at_beginning=True,
        max_years_between_matches=6,
    )
    current = start
    for _ in range(6):
        mine = ours.next_after(current)
        try:
            other = theirs.get_next(datetime).astimezone(UTC)
        except CroniterBadDateError:
            other = None
        if mine is None:
            assert other is None or other > current + timedelta(days=5 * 365)
            return
        assert mine == other, text
        current = mine


TOKENS = ["*", "?", "/", "-", ",", "~", "0", "5", "59", "60", "7", "31", "MON", "jan", "@every",
          "@at", "@daily", "@crontab", "TZ=UTC", "CRON_TZ=Europe/Berlin", "1h", "2024-01-01T00:00:00Z",
          " ", "\t", "x", "é", "٣", "-1"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(st.sampled_from(TOKENS), max_size=14).map("".join) | st.text(max_size=40),
    zone=st.sampled_from(["", "UTC", "Europe/Berlin", "Nowhere/Land", "../x"]),
)
def test_any_text_parses_or_gives_a_schedule_error(text, zone):
    try:
        schedule = parse_schedule(text, zone, "job")
    except ValueError as err:
        assert type(err).__name__ == "ScheduleError"
        message = str(err)
        assert message.startswith(("can't parse job schedule: ", "unknown time zone"))
        return
    nxt = schedule.next_after(datetime(2024, 1, 1, tzinfo=UTC))
    assert nxt is None or nxt > datetime(2024, 1, 1, tzinfo=UTC)

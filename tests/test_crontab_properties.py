"""Property tests: arbitrary input never crashes the parser, and round trips hold."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from crontab_compat.command import join_command, split_command
from crontab_compat.parser import parse_crontab
from crontab_compat.schedule import CronSchedule
from crontab_compat.users import fake_lookup

USERS = fake_lookup({"root": "/root"})
CRONISH = st.text(
    alphabet="0123456789*/-,#~LW?@ \tabcdefghijklmnopqrstuvwxyz=\"'%\\\r\n", max_size=300
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), CRONISH),
    system=st.booleans(),
    dialect=st.sampled_from(["debian", "cronie"]),
)
def test_any_text_gives_entries_or_located_errors(text: str, system: bool, dialect: str) -> None:
    parsed = parse_crontab(text, "f", system=system, owner="root", dialect=dialect, lookup=USERS)
    for issue in parsed.errors:
        assert issue.file == "f" and issue.word
        assert 0 <= issue.line <= text.count("\n") + 1
    if parsed.rejected:
        assert parsed.entries == []
    for entry in parsed.entries:
        if entry.schedule != "@reboot":
            CronSchedule(entry.schedule, UTC)  # what the parser accepts, the schedule accepts


@settings(max_examples=200, deadline=None)
@given(
    command=st.text(alphabet=st.characters(blacklist_characters="\n\r\0%\\"), max_size=40),
    stdin=st.one_of(
        st.none(),
        st.text(alphabet=st.characters(blacklist_characters="\r\0\\"), min_size=1, max_size=40),
    ),
)
@example(command="c", stdin="\n")
@example(command="c", stdin="\n\n")
@example(command="c", stdin="a\n\n")
@example(command="c", stdin="")
def test_command_and_stdin_round_trip(command: str, stdin: str | None) -> None:
    expected_stdin = stdin
    if stdin and not stdin.endswith("\n"):
        expected_stdin = stdin + "\n"  # cron always ends the input with a newline
    assert split_command(join_command(command, stdin)) == (command, expected_stdin)


@settings(max_examples=200, deadline=None)
@given(text=CRONISH.filter(lambda t: "\n" not in t))
def test_schedule_accepts_or_names_the_field(text: str) -> None:
    try:
        sched = CronSchedule(text, ZoneInfo("Europe/Berlin"))
    except ValueError as exc:
        assert str(exc).startswith(("bad ", "bad time specifier"))
        return
    assert sched.describe()

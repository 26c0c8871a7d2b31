"""Parser tests: every trap of reference §1, environment lines, `%`, dialects and bad input."""

from __future__ import annotations

import os

import pytest

from crontab_compat.command import join_command, split_command
from crontab_compat.envline import parse_env_line
from crontab_compat.parser import parse_crontab
from crontab_compat.sources import Source, collect_sources, read_source
from crontab_compat.users import fake_lookup

USERS = fake_lookup({"root": "/root", "alice": "/home/alice", "nobody": "/nonexistent"})


def user_tab(text: str, dialect: str = "debian", owner: str = "alice"):
    return parse_crontab(text, "tab", system=False, owner=owner, dialect=dialect, lookup=USERS)


def system_tab(text: str, dialect: str = "debian"):
    return parse_crontab(text, "/etc/cron.d/x", system=True, dialect=dialect, lookup=USERS)


def words(parsed, kind: str = "errors") -> list[str]:
    return [issue.word for issue in getattr(parsed, kind)]


# -- line types (§1.2) ----------------------------------------------------------------------


def test_comments_blank_lines_and_leading_blanks() -> None:
    parsed = user_tab("# comment\n\n   \n  # indented comment\n\t5 * * * * job\n")
    assert not parsed.errors
    assert [(e.line_no, e.schedule, e.command) for e in parsed.entries] == [(5, "5 * * * *", "job")]


def test_no_trailing_comments_on_job_lines() -> None:
    parsed = user_tab("0 5 * * * run # not a comment for cron\n")
    assert parsed.entries[0].command == "run # not a comment for cron"


def test_trailing_backslash_does_not_continue_the_line() -> None:
    parsed = user_tab("* * * * * echo one \\\n  two\n")
    assert words(parsed) == ["bad minute"]
    assert parsed.errors[0].line == 2
    assert parsed.entries == []  # Debian: the whole file is ignored


def test_missing_final_newline_rejects_file_in_debian() -> None:
    parsed = user_tab("* * * * * first\n* * * * * last")
    assert words(parsed) == ["missing newline before EOF"]
    assert parsed.errors[0].line == 2
    assert parsed.rejected and parsed.entries == []


def test_missing_final_newline_drops_only_last_line_in_cronie() -> None:
    parsed = user_tab("* * * * * first\n* * * * * last", dialect="cronie")
    assert [e.command for e in parsed.entries] == ["first"]
    assert not parsed.rejected


def test_final_comment_or_blanks_without_newline_are_fine() -> None:
    assert not user_tab("* * * * * a\n# end").errors
    assert not user_tab("* * * * * a\n   ").errors


def test_crlf_is_stripped_with_a_warning() -> None:
    parsed = user_tab("A=b\r\n* * * * * echo crlf\r\n")
    assert parsed.entries[0].command == "echo crlf"
    assert parsed.entries[0].env["A"] == "b"
    assert "CRLF line endings" in words(parsed, "warnings")


def test_command_length_limit() -> None:
    assert not user_tab("* * * * * " + "x" * 998 + "\n").errors
    assert words(user_tab("* * * * * " + "x" * 999 + "\n")) == ["command too long"]


def test_too_many_lines() -> None:
    parsed = user_tab("# c\n" * 10_001)
    assert words(parsed) == ["too many lines"]
    assert parsed.rejected


# -- time fields (§1.3) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "word"),
    [
        ("5/10 * * * * x", "bad minute"),
        ("*/0 * * * * x", "bad minute"),
        ("60 * * * * x", "bad minute"),
        ("* 24 * * * x", "bad hour"),
        ("* * 0 * * x", "bad day-of-month"),
        ("* * * 0 * x", "bad month"),
        ("* * * * 8 x", "bad day-of-week"),
        ("* * * * sunday x", "bad day-of-week"),
        ("* * * january * x", "bad month"),
        ("L * * * * x", "bad minute"),
        ("* * L * * x", "bad day-of-month"),
        ("? * * * * x", "bad minute"),
        ("H * * * * x", "bad minute"),
        ("* * * * 5L x", "bad day-of-week"),
        ("0 0 * * * * x", "bad command"),
        ("@Daily x", "bad time specifier"),
        ("@every 5m x", "bad time specifier"),
        ("1-60 * * * * x", "bad minute"),
        ("70-5 * * * * x", "bad minute"),
        ("-* * * * * x", "bad minute"),
    ],
)
def test_rejected_lines(line: str, word: str) -> None:
    parsed = user_tab(f"* * * * * good\n{line}\n")
    assert words(parsed) == [word]
    assert str(parsed.errors[0]).startswith(f"tab:2: {word}")
    assert parsed.entries == []


@pytest.mark.parametrize(
    ("line", "schedule", "warning"),
    [
        ("5#3 * * * * x", "5 * * * *", "surprising field"),
        ("1~10 * * * * x", "1 * * * *", "surprising field"),
        ("10-5 * * * * x", "10-5 * * * *", "surprising field"),
        ("0 0 * * fri-sun x", "0 0 * * fri-sun", "surprising field"),
        ("0 0 * * mon-sun x", "0 0 * * mon-sun", "surprising field"),
        ("0 0 */2 * sun x", "0 0 */2 * sun", "star rule"),
        ("0 0 1 1 * 2024 echo", "0 0 1 1 *", "numeric sixth token"),
        ("* * * * * echo 50%", "* * * * *", "'%' in command"),
    ],
)
def test_accepted_with_surprising_meaning(line: str, schedule: str, warning: str) -> None:
    parsed = user_tab(line + "\n")
    assert not parsed.errors
    assert parsed.entries[0].schedule == schedule
    assert warning in words(parsed, "warnings")


def test_names_in_ranges_and_steps() -> None:
    parsed = user_tab("0 0 * jan-mar/2 mon-fri x\n0 0 * Jan MON x\n")
    assert not parsed.errors
    assert parsed.entries[0].schedule == "0 0 * jan-mar/2 mon-fri"


def test_numeric_sixth_token_is_part_of_the_command() -> None:
    parsed = user_tab("0 0 1 1 * 2024 echo\n")
    assert parsed.entries[0].command == "2024 echo"


# -- keywords (§1.5) ------------------------------------------------------------------------


def test_keywords_and_reboot() -> None:
    parsed = user_tab("@reboot start\n@midnight m\n@annually a\n@hourly h\n")
    assert [e.schedule for e in parsed.entries] == [
        "@reboot",
        "0 0 * * *",
        "0 0 1 1 *",
        "0 * * * *",
    ]
    assert [e.written_schedule for e in parsed.entries] == [
        "@reboot",
        "@midnight",
        "@annually",
        "@hourly",
    ]
    assert "@reboot" in words(parsed, "warnings")


def test_keyword_in_system_crontab_takes_user_field() -> None:
    parsed = system_tab("@daily nobody echo hi\n")
    assert parsed.entries[0].user == "nobody"
    assert parsed.entries[0].command == "echo hi"


# -- the command and `%` (§1.6) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "command", "stdin"),
    [
        ("date +\\%Y-\\%m", "date +%Y-%m", None),
        ("mail -s hi bob%Dear Bob,%%Bye", "mail -s hi bob", "Dear Bob,\n\nBye\n"),
        ("cat%50\\% done", "cat", "50% done\n"),
        ("echo a\\b", "echo a\\b", None),
        ("cat%", "cat", ""),
        ("cat%line%", "cat", "line\n"),
        ("printf '\\n'", "printf '\\n'", None),
    ],
)
def test_percent_splits_command_and_stdin(raw: str, command: str, stdin: str | None) -> None:
    assert split_command(raw) == (command, stdin)
    if stdin:
        assert split_command(join_command(command, stdin)) == (command, stdin)


def test_date_without_escape_is_cut_at_percent() -> None:
    parsed = user_tab("0 0 * * * date +%Y > /tmp/x\n")
    entry = parsed.entries[0]
    assert entry.command == "date +"
    assert entry.stdin == "Y > /tmp/x\n"


# -- environment (§1.7) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("A=b", ("A", "b")),
        ("A = b", ("A", "b")),
        (' A = " b " ', ("A", " b ")),
        ("A=''", ("A", "")),
        ('A= ""', ("A", "")),
        ('"A B"=c', ("A B", "c")),
        ("A=x # c", ("A", "x # c")),
        ("A=$HOME/bin:$PATH", ("A", "$HOME/bin:$PATH")),
        ("A=b=c", ("A", "b=c")),
        ("A=b  \t", ("A", "b")),
        ("=x", ("", "x")),
        ("A=", None),
        ("A =", None),
        ("A B=c", None),
        ('A="x" y', None),
        ('A="unterminated', None),
        ("A='x\"", None),
        ('A="x"#c', None),
        ("* * * * * A=b", None),
    ],
)
def test_env_line_shapes(line: str, expected) -> None:
    assert parse_env_line(line) == expected


def test_cronie_accepts_empty_value() -> None:
    assert parse_env_line("MAILTO=", allow_empty=True) == ("MAILTO", "")
    assert words(user_tab("MAILTO=\n* * * * * x\n")) == ["bad minute"]
    assert not user_tab("MAILTO=\n* * * * * x\n", dialect="cronie").errors


def test_env_snapshot_applies_to_entries_below_only() -> None:
    parsed = user_tab(
        "* * * * * first\nFOO=1\n* * * * * second\nFOO=2\nSHELL=/bin/bash\n@daily third\n"
    )
    first, second, third = parsed.entries
    assert "FOO" not in first.env
    assert second.env["FOO"] == "1"
    assert third.env["FOO"] == "2" and third.env["SHELL"] == "/bin/bash"
    assert second.env["SHELL"] == "/bin/sh"


def test_cron_sets_its_own_variables() -> None:
    parsed = user_tab("LOGNAME=mallory\nHOME=/srv\n* * * * * x\n")
    env = parsed.entries[0].env
    assert env["LOGNAME"] == "alice" and env["USER"] == "alice"  # forced from passwd
    assert env["HOME"] == "/srv"  # may be overridden
    assert env["PATH"] == "/usr/bin:/bin"
    assert user_tab("* * * * * x\n", dialect="cronie").entries[0].env["PATH"].endswith("/sbin")


def test_cron_tz_only_in_cronie() -> None:
    text = "CRON_TZ=Asia/Tokyo\n0 9 * * * x\n"
    debian = user_tab(text)
    assert debian.entries[0].timezone is None
    assert "CRON_TZ ignored" in words(debian, "warnings")
    cronie = user_tab(text, dialect="cronie")
    assert cronie.entries[0].timezone == "Asia/Tokyo"
    assert words(user_tab("CRON_TZ=Mars/Base\n0 9 * * * x\n", dialect="cronie")) == ["bad timezone"]


def test_random_delay_only_in_cronie() -> None:
    text = "RANDOM_DELAY=30\n0 9 * * * x\n"
    assert user_tab(text).entries[0].random_delay_minutes == 0
    assert user_tab(text, dialect="cronie").entries[0].random_delay_minutes == 30
    big = user_tab("RANDOM_DELAY=5000\n0 9 * * * x\n", dialect="cronie")
    assert big.entries[0].random_delay_minutes == 0
    assert "RANDOM_DELAY ignored" in words(big, "warnings")


# -- dialect differences (§1.3, §1.6, §1.10) ------------------------------------------------


def test_cronie_skips_only_bad_lines() -> None:
    parsed = user_tab("* * * * * a\n61 * * * * bad\n* * * * * b\n", dialect="cronie")
    assert [e.command for e in parsed.entries] == ["a", "b"]
    assert [(i.line, i.word) for i in parsed.errors] == [(2, "bad minute")]
    debian = user_tab("* * * * * a\n61 * * * * bad\n* * * * * b\n")
    assert debian.entries == [] and debian.rejected


def test_cronie_weekday_range_ending_in_zero() -> None:
    parsed = user_tab("0 0 * * fri-sun x\n", dialect="cronie")
    assert parsed.entries[0].schedule == "0 0 * * 5-7"


def test_cronie_random_tilde_is_stable_and_in_range() -> None:
    first = user_tab("0~30 * * * * x\n", dialect="cronie").entries[0].schedule
    again = user_tab("0~30 * * * * x\n", dialect="cronie").entries[0].schedule
    minute = int(first.split()[0])
    assert first == again and 0 <= minute <= 30


def test_cronie_dash_prefix_and_dash_n() -> None:
    parsed = system_tab("-*/5 * * * * root -n backup\n", dialect="cronie")
    entry = parsed.entries[0]
    assert entry.command == "backup"
    assert entry.options == {"no_log": "true", "mail_on_failure_only": "true"}
    assert words(system_tab("-*/5 * * * * root x\n")) == ["bad minute"]
    assert system_tab("* * * * * root -n x\n").entries[0].command == "-n x"


# -- system crontabs and users (§1.8) -------------------------------------------------------


def test_system_crontab_user_field() -> None:
    parsed = system_tab("17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    entry = parsed.entries[0]
    assert (entry.user, entry.home) == ("root", "/root")
    assert entry.command == "cd / && run-parts --report /etc/cron.hourly"


def test_unknown_user_rejects_file() -> None:
    parsed = system_tab("* * * * * root ok\n* * * * * mallory evil\n")
    assert words(parsed) == ["bad username"]
    assert "mallory" in str(parsed.errors[0])
    assert parsed.entries == []
    cronie = system_tab("* * * * * root ok\n* * * * * mallory evil\n", dialect="cronie")
    assert [e.user for e in cronie.entries] == ["root"]


def test_unknown_owner_of_user_crontab() -> None:
    parsed = user_tab("* * * * * x\n", owner="ghost")
    assert words(parsed) == ["bad username"]


def test_system_line_without_command() -> None:
    assert words(system_tab("* * * * * root\n")) == ["bad command"]


def test_identical_lines_get_distinct_occurrences() -> None:
    parsed = user_tab("* * * * * x\n* * * * * x\n")
    assert [e.occurrence for e in parsed.entries] == [1, 2]


def test_cron_d_names_with_dots_are_skipped(tmp_path) -> None:
    (tmp_path / "good_name-1").write_text("* * * * * root x\n")
    (tmp_path / "job.cron").write_text("* * * * * root x\n")
    (tmp_path / "old~").write_text("* * * * * root x\n")
    sources, errors, warnings = collect_sources([str(tmp_path)], None, "debian")
    assert [os.path.basename(s.path) for s in sources] == ["good_name-1"]
    assert len(warnings) == 2 and not errors
    sources, _, warnings = collect_sources([str(tmp_path)], None, "cronie")
    assert sorted(os.path.basename(s.path) for s in sources) == ["good_name-1", "job.cron"]


def test_spool_directory_files_are_user_crontabs(tmp_path) -> None:
    spool = tmp_path / "crontabs"
    spool.mkdir()
    (spool / "alice").write_text("* * * * * x\n")
    sources, _, _ = collect_sources([str(spool)], None, "debian")
    assert sources == [Source(str(spool / "alice"), False, "alice")]


# -- bad input ------------------------------------------------------------------------------


def read(path, system: bool = True):
    return read_source(Source(str(path), system, None if system else "alice"), "debian", USERS)


def test_garbage_file(tmp_path) -> None:
    path = tmp_path / "garbage"
    path.write_text("this is not a crontab at all\n{]]]} ¯\\_(ツ)_/¯\n")
    parsed = read(path)
    assert parsed.rejected and parsed.entries == []
    assert str(parsed.errors[0]).endswith("bad minute: 'this'")


def test_binary_file(tmp_path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"* * * * * root ok\n\x7fELF\x02\x01\x01\x00\x00\x00")
    parsed = read(path)
    assert parsed.rejected and parsed.entries == []
    assert (parsed.errors[0].word, parsed.errors[0].line) == ("binary file", 2)


def test_non_utf8_file(tmp_path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(b"* * * * * root echo caf\xe9\n")
    parsed = read(path)
    assert parsed.rejected and words(parsed) == ["not UTF-8 text"]


def test_ten_megabyte_file(tmp_path) -> None:
    path = tmp_path / "huge"
    line = b"* * * * * root echo " + b"x" * 80 + b"\n"
    path.write_bytes(line * (10 * 1024 * 1024 // len(line)))
    parsed = read(path)
    assert parsed.rejected and parsed.entries == []
    assert words(parsed) == ["file too large"]


def test_unreadable_and_missing_files(tmp_path) -> None:
    missing = read(tmp_path / "nope")
    assert missing.rejected and words(missing) == ["cannot read file"]
    assert "No such file" in str(missing.errors[0])
    directory = read(tmp_path)
    assert words(directory) == ["not a regular file"]


def test_permission_denied(tmp_path, monkeypatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("* * * * * root x\n")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests often run as root, where mode 000 does not stop reads; fail the open instead.
    monkeypatch.setattr("crontab_compat.sources.open", denied, raising=False)
    parsed = read(secret)
    assert parsed.rejected and parsed.entries == []
    assert str(parsed.errors[0]) == f"{secret}: cannot read file: Permission denied"


def test_text_that_is_not_unicode_clean() -> None:
    parsed = user_tab("* * * * * ok\n* * * * * bad \udd00\n")
    assert parsed.rejected and (parsed.errors[0].word, parsed.errors[0].line) == (
        "not UTF-8 text",
        2,
    )
    parsed = user_tab("* * * * * ok\n\0\n", dialect="cronie")
    assert parsed.rejected and parsed.entries == []
    assert (parsed.errors[0].word, parsed.errors[0].line) == ("binary file", 2)

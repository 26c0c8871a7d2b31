"""Entry -> Dkron job conversion, import plans, and the real-world fixture files."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from crontab_compat.convert import entry_to_job, job_name, parse_tags
from crontab_compat.parser import parse_crontab
from crontab_compat.plan import format_plan, plan_import, plan_text_import, plan_to_dict
from crontab_compat.schedule import CronSchedule
from crontab_compat.users import fake_lookup

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "crontab")
USERS = fake_lookup({"root": "/root", "alice": "/home/alice", "nobody": "/nonexistent"})
SLUG = re.compile(r"^[a-z0-9_-]+$")


def one_job(text: str, system: bool = True, dialect: str = "debian", **kwargs) -> dict:
    parsed = parse_crontab(
        text, "/etc/cron.d/app", system=system, owner="alice", dialect=dialect, lookup=USERS
    )
    assert not parsed.errors, parsed.errors
    (entry,) = parsed.entries
    kwargs.setdefault("agent_user", "root")
    return entry_to_job(entry, timezone="Europe/Berlin", host="web1", **kwargs)


def test_job_shape_and_string_config() -> None:
    job = one_job("MAILTO=ops@example.org\n*/5 * * * * alice run --fast\n")
    assert job["schedule"] == "@crontab */5 * * * *"
    assert job["timezone"] == "Europe/Berlin"
    assert job["owner_email"] == "ops@example.org"
    assert job["executor"] == "shell"
    config = job["executor_config"]
    assert all(isinstance(v, str) for v in config.values())
    assert config["su"] == "alice" and config["cwd"] == "/home/alice"
    assert config["command"] == "run --fast" and config["shell"] == "true"
    assert job["metadata"]["crontab_file"] == "/etc/cron.d/app"
    assert job["metadata"]["crontab_user"] == "alice"
    assert job["metadata"]["crontab_line"] == "2"
    assert "payload" not in config
    assert job["tags"] == {}


def test_no_su_for_the_agents_own_user() -> None:
    assert "su" not in one_job("0 0 * * * root x\n")["executor_config"]


def test_env_string_and_env_json() -> None:
    job = one_job('A=1\nB="x, y"\n0 0 * * * root x\n')
    config = job["executor_config"]
    env = json.loads(config["env_json"])
    assert env["A"] == "1" and env["B"] == "x, y" and env["LOGNAME"] == "root"
    assert "A=1" in config["env"].split(",")
    assert "B=" not in config["env"]  # a comma cannot be carried by Dkron's `env`


def test_other_shell_is_honoured() -> None:
    job = one_job("SHELL=/bin/bash\n0 0 * * * root echo $((1+1)) >/dev/null\n")
    command = job["executor_config"]["command"]
    assert shlex.split(command)[:3] == ["exec", "/bin/bash", "-c"]
    assert shlex.split(command)[3] == "echo $((1+1)) >/dev/null"


def test_stdin_goes_to_payload() -> None:
    job = one_job("0 0 * * * root mail -s hi bob%Dear Bob,%%50\\% off\n")
    config = job["executor_config"]
    assert config["command"] == "mail -s hi bob"
    assert base64.b64decode(config["payload"]).decode() == "Dear Bob,\n\n50% off\n"


def test_reboot_and_keywords() -> None:
    assert one_job("@reboot root start\n")["schedule"] == "@reboot"
    daily = one_job("@daily root x\n")
    assert daily["schedule"] == "@crontab 0 0 * * *"
    assert daily["metadata"]["crontab_time"] == "@daily"


def test_cronie_zone_and_random_delay() -> None:
    job = one_job("CRON_TZ=Asia/Tokyo\nRANDOM_DELAY=10\n0 9 * * * root x\n", dialect="cronie")
    assert job["timezone"] == "Asia/Tokyo"
    delay = int(job["metadata"]["crontab_random_delay_seconds"])
    assert 0 <= delay < 600
    assert job["executor_config"]["command"] == f"sleep {delay}; x"
    again = one_job("CRON_TZ=Asia/Tokyo\nRANDOM_DELAY=10\n0 9 * * * root x\n", dialect="cronie")
    assert again == job


def test_pin_node_and_tags() -> None:
    assert one_job("0 0 * * * root x\n", pin_node="web1")["tags"] == {"node": "web1:1"}
    tags = parse_tags(["role=web:2,dc=eu"])
    assert tags == {"role": "web:2", "dc": "eu"}
    assert one_job("0 0 * * * root x\n", tags=tags)["tags"] == tags


def test_names_are_stable_and_distinct() -> None:
    text = "0 0 * * * root x\n0 0 * * * root x\n0 1 * * * root x\n"
    parsed = parse_crontab(text, "/etc/crontab", system=True, lookup=USERS)
    names = [job_name(e, "web1") for e in parsed.entries]
    assert len(set(names)) == 3
    again = parse_crontab("# moved down\n" + text, "/etc/crontab", system=True, lookup=USERS)
    assert [job_name(e, "web1") for e in again.entries] == names  # line numbers do not matter
    assert job_name(parsed.entries[0], "web2") != names[0]  # another host's /etc/crontab


@settings(max_examples=150, deadline=None)
@given(
    file=st.text(min_size=1, max_size=40).filter(lambda s: "\0" not in s and "/" not in s),
    user=st.sampled_from(["root", "alice", "nobody"]),
    command=st.text(
        alphabet=st.characters(blacklist_characters="\n\r\0"), min_size=1, max_size=60
    ).filter(lambda c: not c.lstrip(" \t").startswith("*")),
)
def test_names_are_always_slug_valid(file: str, user: str, command: str) -> None:
    parsed = parse_crontab(
        f"0 0 * * * {user} {command}\n", f"/etc/cron.d/{file}", system=True, lookup=USERS
    )
    if parsed.entries:
        name = job_name(parsed.entries[0], "Host.Example")
        assert SLUG.match(name) and len(name) <= 64


def test_plan_for_the_fixture_directory() -> None:
    plan = plan_import(
        [os.path.join(FIXTURES, "cron.d"), os.path.join(FIXTURES, "debian-etc-crontab")],
        [],
        host="web1",
        timezone="Europe/Berlin",
        lookup=USERS,
        agent_user="root",
    )
    assert not plan.errors and not plan.blocked
    schedules = sorted(job["schedule"] for job in plan.create)
    assert schedules == sorted(
        [
            "@crontab 30 7-23 * * *",  # anacron
            "@crontab 30 3 * * 0",  # e2scrub_all
            "@crontab 10 3 * * *",
            "@crontab 09,39 * * * *",  # php sessionclean
            "@crontab 5-55/10 * * * *",  # sysstat
            "@crontab 59 23 * * *",
            "@crontab 0 */12 * * *",  # certbot
            "@crontab 24 8 * * *",  # popularity-contest
            "@crontab 17 * * * *",  # /etc/crontab
            "@crontab 25 6 * * *",
            "@crontab 47 6 * * 7",
            "@crontab 52 6 1 * *",
        ]
    )
    assert any("backup.dpkg-dist" in str(w) for w in plan.warnings)
    text = format_plan(plan)
    assert "runs at minutes 9 and 39 past every hour every day (Europe/Berlin time)" in text
    assert "12 to create, 0 to update, 0 to delete, 0 unchanged" in text


def test_fixture_system_corpus_meanings() -> None:
    parsed = parse_crontab(
        Path(FIXTURES, "system-corpus").read_text(encoding="utf-8"),
        "system-corpus",
        system=True,
        lookup=USERS,
    )
    assert not parsed.errors
    by_command = {e.command: e for e in parsed.entries}
    berlin = ZoneInfo("Europe/Berlin")
    odd_sundays = CronSchedule(by_command['echo "Sundays on odd dates"'].schedule, berlin)
    assert "both must match" in odd_sundays.describe()
    either = CronSchedule(by_command['echo "1st, 15th or Friday"'].schedule, berlin)
    assert "either matches" in either.describe()
    leading = by_command["echo yearly"].env["LEADING"]
    assert leading == "  spaced value  "
    assert by_command["echo yearly"].env["EMPTY"] == ""
    assert by_command["echo yearly"].env["MAILTO"] == "ops@example.org,dev@example.org"
    assert by_command["echo every five minutes in office hours"].user == "nobody"


def test_plan_from_pasted_text() -> None:
    text = "MAILTO=me@example.org\n0 9 * * mon-fri alice standup\n"
    plan = plan_text_import(
        text, "pasted", [], host="web1", timezone="UTC", lookup=USERS, agent_user="root"
    )
    (job,) = plan.create
    assert job["executor_config"]["su"] == "alice"
    assert job["metadata"]["crontab_file"] == "pasted"
    again = plan_text_import(
        "0 9 * * mon-fri standup\n",
        "pasted",
        [job],
        user="alice",
        host="web1",
        timezone="UTC",
        lookup=USERS,
    )
    assert len(again.create) == 1 and again.delete == [job]  # another line text: replaced
    bad = plan_text_import("0 9 * * * ghost x\n", "pasted", [], host="h", lookup=USERS)
    assert bad.blocked and [i.word for i in bad.errors] == ["bad username", "file rejected"]


def test_plan_as_json() -> None:
    plan = plan_text_import(
        "0 9 * * * root x\n61 * * * * root y\n",
        "pasted",
        [],
        host="h",
        timezone="UTC",
        lookup=USERS,
        dialect="cronie",
    )
    data = json.loads(json.dumps(plan_to_dict(plan)))
    assert data["blocked"] is False
    assert data["create"][0]["schedule_words"] == "at 09:00 every day (UTC time)"
    assert data["errors"] == [
        {
            "file": "pasted",
            "line": 2,
            "word": "bad minute",
            "detail": "'61'",
            "text": "pasted:2: bad minute: '61'",
        }
    ]

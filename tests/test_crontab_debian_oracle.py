"""The parser accepts and rejects the same crontabs as Debian's own `crontab -n` (dry-run check).

Needs the Debian package `cron` (3.0pl1-160 or later, for `-n`); without it these tests skip.
Each case is a user crontab; when Debian rejects it, our error must carry the same error word.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from crontab_compat.parser import parse_crontab
from crontab_compat.users import fake_lookup

CRONTAB = shutil.which("crontab")


def _has_dry_run() -> bool:
    if CRONTAB is None:
        return False
    probe = subprocess.run(
        [CRONTAB, "-n", "/dev/null"], capture_output=True, text=True, timeout=10, check=False
    )
    return "invalid option" not in probe.stderr and "usage" not in probe.stderr.lower()


pytestmark = pytest.mark.skipif(
    not _has_dry_run(), reason="Debian `crontab -n` not installed (apt-get install cron)"
)

LONG = "x" * 998
CASES = [
    # plain entries and every field's limits
    "* * * * * x",
    "0 0 1 1 0 x",
    "59 23 31 12 7 x",
    "60 * * * * x",
    "* 24 * * * x",
    "* * 0 * * x",
    "* * 32 * * x",
    "* * * 0 * x",
    "* * * 13 * x",
    "* * * * 8 x",
    "1-60 * * * * x",
    "70-5 * * * * x",
    "10-5 * * * * x",
    "99999999999 * * * * x",
    "000000000000000000005 * * * * x",
    # steps
    "*/35 * * * * x",
    "*/0 * * * * x",
    "5/10 * * * * x",
    "1-10/0 * * * * x",
    "0-59/30 * * * * x",
    "*/100 * * * * x",
    "1-1/3 * * * * x",
    "5/ * * * * x",
    "*/ * * * * x",
    "1/2-3 * * * * x",
    "* * * 12 7/1 x",
    "* * * * 1-5/2 x",
    # lists
    "1,2,3 * * * * x",
    "1, * * * * x",
    ",5 * * * * x",
    "1,,2 * * * * x",
    "*/2,5 * * * * x",
    "5,*/10 * * * * x",
    # names
    "* * * jan-mar/2 * x",
    "* * * Jan * x",
    "* * * * MON x",
    "* * * * Sun-Sat/2 x",
    "* * * * sunday x",
    "* * * * Tues x",
    "* * * january * x",
    "jan * * * * x",
    "* * mon * * x",
    "* * * * fri-sun x",
    "* * * * mon-sun x",
    "* * * * 7-0 x",
    "* * * * 8-1 x",
    # trailing garbage and odd characters
    "5#3 * * * * x",
    "1~10 * * * * x",
    "*/5/2 * * * * x",
    "*-5 * * * * x",
    "1-5-7 * * * * x",
    "5x * * * * x",
    "x5 * * * * x",
    "*/35abc * * * * x",
    "1-5/2x * * * * x",
    "-5 * * * * x",
    "5- * * * * x",
    "L * * * * x",
    "* * L * * x",
    "* * * * 5L x",
    "? * * * * x",
    "H * * * * x",
    "-* * * * * x",
    # keywords
    "@daily x",
    "@Daily x",
    "@midnight x",
    "@reboot x",
    "@annually x",
    "@every x",
    "@yearly",
    # the command
    "0 0 * * * * x",
    "0 0 * * * */5 x",
    "0 0 * * * *x",
    "0 0 * * * x *",
    "0 0 1 1 * 2024 x",
    "* * * * * -n x",
    "* * * * * date +%Y",
    f"* * * * * {LONG}",
    f"* * * * * {LONG}y",
    "* * * *",
    "\t* * * * *\tx",
    # environment lines
    "A=",
    'A=""',
    "A=''",
    "A = b",
    "A B=c",
    '"A B"=c',
    'A="x" y',
    'A="x"  ',
    "A=x # c",
    "=x",
    'A="unterminated',
    'A="x"#c',
    "A =",
    "MAILTO=ops@example.org,dev@example.org",
]


def debian_accepts(tmp_path, text: str) -> tuple[bool, str]:
    path = tmp_path / "tab"
    path.write_text(text)
    done = subprocess.run(
        [CRONTAB, "-n", str(path)], capture_output=True, text=True, timeout=10, check=False
    )
    return done.returncode == 0, done.stdout + done.stderr


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 50
    assert len(set(CASES)) == len(CASES)


@pytest.mark.parametrize("line", CASES)
def test_same_verdict_as_debian(tmp_path, line: str) -> None:
    text = f"{line}\n* * * * * true\n"
    accepted, output = debian_accepts(tmp_path, text)
    ours = parse_crontab(
        text, "tab", system=False, owner="alice", lookup=fake_lookup({"alice": "/home/alice"})
    )
    assert (not ours.errors) == accepted, f"Debian said: {output.strip()}; we said {ours.errors}"
    if not accepted:
        assert ours.errors[0].word in output


@pytest.mark.parametrize(
    "text",
    ["* * * * * x", "A=b", "# only a comment", "* * * * * x\n   ", "", "\n\n"],
)
def test_final_newline_rule_matches_debian(tmp_path, text: str) -> None:
    accepted, _ = debian_accepts(tmp_path, text)
    ours = parse_crontab(
        text, "tab", system=False, owner="alice", lookup=fake_lookup({"alice": "/home/alice"})
    )
    assert (not ours.errors) == accepted

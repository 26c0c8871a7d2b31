"""@reboot runs once per boot of the host, not once per agent start."""

from __future__ import annotations

import pytest

from crontab_compat.reboot import (
    booted_since_last_run,
    claim_reboot_run,
    current_boot_id,
    record_run,
)


def test_once_per_boot_across_agent_restarts(tmp_path) -> None:
    state = str(tmp_path / "state")
    assert claim_reboot_run("job-a", state, boot_id="boot-1") is True
    # An agent restart within the same boot: the state on disk says it already ran.
    assert claim_reboot_run("job-a", state, boot_id="boot-1") is False
    assert claim_reboot_run("job-b", state, boot_id="boot-1") is True
    # The host reboots: a new boot id.
    assert booted_since_last_run("job-a", state, boot_id="boot-2") is True
    assert claim_reboot_run("job-a", state, boot_id="boot-2") is True
    assert claim_reboot_run("job-a", state, boot_id="boot-2") is False


def test_record_run_then_check(tmp_path) -> None:
    state = str(tmp_path)
    assert booted_since_last_run("x/../y", state, boot_id="b") is True
    record_run("x/../y", state, boot_id="b")
    assert booted_since_last_run("x/../y", state, boot_id="b") is False
    (written,) = (p.name for p in tmp_path.iterdir())
    assert written.startswith("reboot-x____y-")


def test_boot_id_sources(tmp_path) -> None:
    boot_id = tmp_path / "boot_id"
    boot_id.write_text("1b3d5f\n")
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    assert current_boot_id(str(boot_id), str(stat)) == "1b3d5f"
    assert current_boot_id(str(tmp_path / "missing"), str(stat)) == "btime:1700000000"
    with pytest.raises(RuntimeError, match="cannot tell this host's boot"):
        current_boot_id(str(tmp_path / "missing"), str(tmp_path / "missing"))


def test_real_host_boot_id_is_stable() -> None:
    assert current_boot_id() == current_boot_id()

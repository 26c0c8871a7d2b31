"""`@reboot` means once per boot of the host, not once per agent start.

The boot is identified by the kernel's boot id (a fresh UUID each boot), falling back to the
boot time from /proc/stat. A small state file per job in a given directory remembers the boot of
the last run; the job is due when the current boot differs. Writes are atomic (write + rename).
"""

from __future__ import annotations

import hashlib
import os
import re

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
PROC_STAT_PATH = "/proc/stat"


def current_boot_id(boot_id_path: str = BOOT_ID_PATH, stat_path: str = PROC_STAT_PATH) -> str:
    """A string that changes on every boot of this host."""
    try:
        with open(boot_id_path, encoding="ascii") as handle:
            value = handle.read().strip()
            if value:
                return value
    except OSError:
        pass
    try:
        with open(stat_path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return "btime:" + line.split()[1]
    except OSError:
        pass
    raise RuntimeError("cannot tell this host's boot: no boot id and no boot time")


def _state_file(state_dir: str, job_name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", job_name)[:80]
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return os.path.join(state_dir, f"reboot-{safe}-{digest}")


def booted_since_last_run(job_name: str, state_dir: str, boot_id: str | None = None) -> bool:
    """True when this host has booted since the job last ran (or it never ran here)."""
    boot = boot_id or current_boot_id()
    try:
        with open(_state_file(state_dir, job_name), encoding="utf-8") as handle:
            return handle.read().strip() != boot
    except FileNotFoundError:
        return True


def record_run(job_name: str, state_dir: str, boot_id: str | None = None) -> None:
    """Remember that the job ran during the current boot."""
    boot = boot_id or current_boot_id()
    os.makedirs(state_dir, exist_ok=True)
    path = _state_file(state_dir, job_name)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(boot + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def claim_reboot_run(job_name: str, state_dir: str, boot_id: str | None = None) -> bool:
    """Decide and record in one step: True exactly once per boot for each job."""
    boot = boot_id or current_boot_id()
    if not booted_since_last_run(job_name, state_dir, boot):
        return False
    record_run(job_name, state_dir, boot)
    return True

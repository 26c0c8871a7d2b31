"""`dkron selfcheck` (hidden): show which dependencies this build runs with and prove they work.

Used by the zipapp tests and by operators who want to know whether a dkron.pyz is complete on a
bare machine: it imports the one bundled dependency (tzdata, the zone database for hosts without
/usr/share/zoneinfo), reports where it came from, resolves a time zone through zoneinfo and
computes a cron fire time in it with the agent's own schedule engine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import zoneinfo
from datetime import UTC, datetime
from typing import TextIO

import dkron_pkg

# (import name, distribution name)
BUNDLED = (("tzdata", "tzdata"),)
CHECK_ZONE = "America/Sao_Paulo"


def _version(module: object, dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def run_selfcheck(out: TextIO) -> int:
    """Print one line per check; return 0 when everything works, 1 otherwise."""
    failures = 0
    missing_tzdata = False
    print(f"python: {sys.version.split()[0]} ({sys.executable})", file=out)
    print(f"dkron: {dkron_pkg.__version__} from {os.path.dirname(dkron_pkg.__file__)}", file=out)
    for name, dist in BUNDLED:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            print(f"{dist}: MISSING ({e})", file=out)
            if name == "tzdata":
                missing_tzdata = True  # only a failure if zoneinfo finds no zones without it
            else:
                failures += 1
            continue
        extra = f" (IANA {module.IANA_VERSION})" if hasattr(module, "IANA_VERSION") else ""
        print(f"{dist}: {_version(module, dist)}{extra} from {module.__file__}", file=out)
    print(f"zoneinfo TZPATH: {list(zoneinfo.TZPATH)}", file=out)
    try:
        zone = zoneinfo.ZoneInfo(CHECK_ZONE)
        moment = datetime(2024, 1, 15, 12, 0, tzinfo=UTC).astimezone(zone)
        print(f"zone {CHECK_ZONE}: 2024-01-15T12:00:00Z is {moment.isoformat()}", file=out)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as e:
        print(f"zone {CHECK_ZONE}: FAILED ({e})", file=out)
        failures += 1 + int(missing_tzdata)
        zone = None
    if zone is not None:
        try:
            from dkron_pkg.schedule import parse_schedule

            start = datetime(2024, 1, 15, 12, 0, tzinfo=zone)
            fire = parse_schedule("0 30 6 * * *", CHECK_ZONE).next_after(start)
            if fire is None:
                raise ValueError("the schedule never fires")
            shown = fire.astimezone(zone).isoformat()
            print(f"cron check: '0 30 6 * * *' after {start.isoformat()} is {shown}", file=out)
        except Exception as e:  # noqa: BLE001 - report any breakage as a failed check
            print(f"cron check: FAILED ({type(e).__name__}: {e})", file=out)
            failures += 1
    print("selfcheck: ok" if not failures else f"selfcheck: {failures} FAILED", file=out)
    return 0 if not failures else 1

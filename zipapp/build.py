#!/usr/bin/env python3
"""Build dist/dkron.pyz: our packages and their pure-Python dependencies in one file.

    python3 zipapp/build.py [--output PATH] [--pip-arg ARG ...]

The archive holds dkron_pkg/ (with the web UI's static files), crontab_compat/, a __main__.py
that runs the `dkron` command line, and the pinned dependency installed by pip (tzdata). It runs
on any python3 >= 3.11 with no pip packages at all: zoneinfo finds its zones in the bundled
tzdata package when the host has no /usr/share/zoneinfo.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipapp
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the runtime imports beyond the standard library: only tzdata, the zone database that
# zoneinfo falls back to on hosts without /usr/share/zoneinfo. (croniter and python-dateutil
# are test oracles, not runtime code: see pyproject's test extras.)
PINS = ("tzdata==2026.6",)
OUR_PACKAGES = ("dkron_pkg", "crontab_compat")
COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib", ".exe", ".a", ".lib")
DROPPED_DIRS = {"__pycache__", "tests", "test", "bin"}
DROPPED_SUFFIXES = (".pyc", ".pyo", ".pyi")
LICENSE_NAME = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)
MAIN = '''"""dkron.pyz entry point: run the dkron command line."""

import sys

from dkron_pkg.cli import main

sys.exit(main(sys.argv[1:]))
'''


class BuildError(Exception):
    """The build cannot produce a correct archive; the message says why and what to do."""


def copy_our_packages(stage: Path, root: Path = ROOT) -> None:
    """Copy our packages (sources and static files, no caches) into the archive's folder."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")
    for name in OUR_PACKAGES:
        source = root / name
        if not (source / "__init__.py").is_file():
            raise BuildError(f"{source} is not a package (no __init__.py)")
        shutil.copytree(source, stage / name, ignore=ignore)
    (stage / "__main__.py").write_text(MAIN, encoding="utf-8")


def pip_install(target: Path, pip_args: list[str]) -> None:
    """Install exactly the pinned wheels into `target` (no byte code, no other packages)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--no-compile",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
        *pip_args,
        *PINS,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise BuildError(
            "pip could not install the bundled dependencies "
            f"({', '.join(PINS)}):\n  " + "\n  ".join(detail)
        )


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_requirements(deps: Path) -> None:
    """Every installed distribution's unconditional requirements must be bundled too."""
    metadata = {p: (p / "METADATA").read_text(encoding="utf-8") for p in deps.glob("*.dist-info")}
    names = set()
    for text in metadata.values():
        match = re.search(r"^Name: (.+)$", text, re.MULTILINE)
        if match:
            names.add(_normalise(match.group(1).strip()))
    for dist, text in metadata.items():
        for line in re.findall(r"^Requires-Dist: (.+)$", text, re.MULTILINE):
            if ";" in line:
                continue  # extras and platform markers are optional
            required = _normalise(re.split(r"[\s<>=!~\[(]", line.strip(), maxsplit=1)[0])
            if required not in names:
                raise BuildError(
                    f"{dist.name} requires {line.strip()!r}, which is not bundled: "
                    "add it to PINS in zipapp/build.py"
                )


def prune(deps: Path) -> None:
    """Drop what a zipapp never uses: caches, tests, scripts, type stubs, dist-info bulk."""
    for path in sorted(deps.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists():
            continue
        rel = path.relative_to(deps)
        if path.is_dir() and path.name in DROPPED_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in DROPPED_SUFFIXES:
            path.unlink()
        elif path.is_file() and rel.parts[0].endswith(".dist-info"):
            if path.name == "METADATA":
                _keep_metadata_headers(path)
            elif not LICENSE_NAME.search(path.name):
                path.unlink()


def _keep_metadata_headers(path: Path) -> None:
    """METADATA without its long description: names and versions are all importlib needs."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.split("\n\n", 1)[0] + "\n", encoding="utf-8")


def check_pure_python(deps: Path) -> None:
    """Refuse compiled files: the archive must run on any machine with python3."""
    compiled = sorted(
        str(p.relative_to(deps)) for p in deps.rglob("*") if p.name.endswith(COMPILED_SUFFIXES)
    )
    if compiled:
        shown = ", ".join(compiled[:5]) + (" ..." if len(compiled) > 5 else "")
        raise BuildError(
            f"a bundled dependency ships compiled files ({shown}); dkron.pyz must stay pure "
            "Python: pin a version with a pure wheel or drop the dependency"
        )


def merge(deps: Path, stage: Path) -> None:
    for item in sorted(deps.iterdir()):
        if (stage / item.name).exists():
            raise BuildError(f"dependency file {item.name} would overwrite our own {item.name}")
        shutil.move(str(item), stage / item.name)


def build(output: Path, pip_args: list[str], root: Path = ROOT) -> Path:
    """Build the archive at `output` and return its path."""
    with tempfile.TemporaryDirectory(prefix="dkron-pyz-") as tmp:
        stage, deps = Path(tmp, "app"), Path(tmp, "deps")
        stage.mkdir()
        copy_our_packages(stage, root)
        pip_install(deps, pip_args)
        check_requirements(deps)
        prune(deps)
        check_pure_python(deps)
        merge(deps, stage)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        zipapp.create_archive(
            stage, target=partial, interpreter="/usr/bin/env python3", compressed=True
        )
        partial.chmod(0o755)  # runnable as ./dkron.pyz by every user, like an installed binary
        os.replace(partial, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build dist/dkron.pyz.")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "dist" / "dkron.pyz", help="archive to write"
    )
    parser.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        help="extra argument for pip install, e.g. --pip-arg=--find-links=DIR (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        path = build(args.output, args.pip_arg)
    except BuildError as e:
        print(f"build.py: error: {e}", file=sys.stderr)
        return 1
    size = path.stat().st_size
    print(f"built {path} ({size:,} bytes; bundles {', '.join(PINS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

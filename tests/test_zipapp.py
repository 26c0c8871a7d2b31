"""dist/dkron.pyz: built by zipapp/build.py, it runs on a bare python3 from any folder; and
`pip install .` gives a `dkron` command."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import dkron_pkg

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "zipapp" / "build.py"


def _load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dkron_zipapp_build", BUILD_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the archive once per test session, shared by pytest-xdist workers through a lock."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session folder every worker shares
    folder = base / "dkron-pyz"
    folder.mkdir(exist_ok=True)
    target = folder / "dkron.pyz"
    with open(folder / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            # What the tree held when the build started (other work may change it meanwhile).
            (folder / "sources.json").write_text(json.dumps(sorted(_our_files())))
            proc = subprocess.run(
                [sys.executable, str(BUILD_SCRIPT), "--output", str(target)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith(f"built {target} (")
    return target


def _our_files() -> set[str]:
    return {
        p.relative_to(REPO).as_posix()
        for package in build.OUR_PACKAGES
        for p in (REPO / package).rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and not p.name.startswith(".")
        and p.suffix != ".pyc"
    }


def run_pyz(pyz: Path, *args: str, flags: tuple[str, ...] = ("-I",), cwd: Path, env=None):
    return subprocess.run(
        [sys.executable, *flags, str(pyz), *args],
        cwd=cwd,
        env=env if env is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_from_an_empty_folder(pyz: Path, tmp_path: Path) -> None:
    proc = run_pyz(pyz, "version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == [
        f"Name: {dkron_pkg.NAME}",
        f"Version: {dkron_pkg.__version__}",
        f"Codename: {dkron_pkg.CODENAME}",
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written next to the user


def test_bundled_dependencies_work_without_site_packages_or_system_zones(
    pyz: Path, tmp_path: Path
) -> None:
    no_zones = tmp_path / "no-zoneinfo"
    no_zones.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONTZPATH": str(no_zones)}
    # -S: not even the interpreter's site-packages; only the archive can provide the deps.
    proc = run_pyz(pyz, "selfcheck", flags=("-I", "-S"), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split(":", 1)[0]: line for line in proc.stdout.splitlines()}
    assert "tzdata: 2026.6" in lines["tzdata"]
    assert f"{pyz}/" in lines["tzdata"], lines["tzdata"]  # imported from inside the archive
    assert f"{pyz}/" in lines["dkron"], lines["dkron"]
    assert lines["zoneinfo TZPATH"] == f"zoneinfo TZPATH: [{str(no_zones)!r}]"
    assert lines["zone America/Sao_Paulo"].endswith("is 2024-01-15T09:00:00-03:00")
    assert "is 2024-01-16T06:30:00-03:00" in proc.stdout  # our cron engine in the zone
    assert proc.stdout.rstrip().endswith("selfcheck: ok")


def test_keygen_and_a_bad_flag(pyz: Path, tmp_path: Path) -> None:
    proc = run_pyz(pyz, "keygen", cwd=tmp_path)
    assert proc.returncode == 0 and len(proc.stdout.strip()) == 24
    proc = run_pyz(pyz, "agent", "--raft-multiplier", "99", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "dkron: error: flag --raft-multiplier: must be from 1 to 10, got 99\n"
    proc = run_pyz(pyz, "agent", "--no-such-flag", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("dkron: error: unrecognized arguments: --no-such-flag")


def test_crontab_commands_are_inside(pyz: Path, tmp_path: Path) -> None:
    proc = run_pyz(pyz, "crontab", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "import" in proc.stdout and "export" in proc.stdout


def test_archive_holds_our_files_and_no_build_leftovers(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)
    assert "__main__.py" in names
    ours = set(json.loads((pyz.parent / "sources.json").read_text()))
    assert "dkron_pkg/cli.py" in ours
    assert ours <= names, sorted(ours - names)[:5]
    assert any(n.startswith("dkron_pkg/ui/") for n in names) == (REPO / "dkron_pkg/ui").is_dir()
    assert "tzdata/zoneinfo/Europe/Berlin" in names
    # Only what runs: the runtime imports the standard library and tzdata, nothing else.
    tops = {n.split("/", 1)[0] for n in names}
    tops = {t.split("-", 1)[0] if t.endswith(".dist-info") else t for t in tops}
    assert tops == {"__main__.py", "dkron_pkg", "crontab_compat", "tzdata"}, sorted(tops)
    leftovers = [
        n
        for n in names
        if "__pycache__" in n
        or n.endswith((".pyc", ".so", ".pyi"))
        or "/tests/" in n
        or n.startswith("bin/")
        or (
            ".dist-info/" in n
            and not n.endswith(("/METADATA", "/LICENSE", "/"))
            and "licen" not in n.lower()
        )
    ]
    assert leftovers == []


# -- the build script's own guards -------------------------------------------------------------


def test_compiled_files_in_a_dependency_stop_the_build(tmp_path: Path) -> None:
    (tmp_path / "fastlib").mkdir()
    (tmp_path / "fastlib" / "__init__.py").write_text("")
    (tmp_path / "fastlib" / "_speed.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    with pytest.raises(build.BuildError) as info:
        build.check_pure_python(tmp_path)
    assert "fastlib/_speed.cpython-311-x86_64-linux-gnu.so" in str(info.value)
    assert "pure Python" in str(info.value)


def test_a_missing_requirement_stops_the_build(tmp_path: Path) -> None:
    info_dir = tmp_path / "thing-1.0.dist-info"
    info_dir.mkdir()
    (info_dir / "METADATA").write_text(
        "Name: thing\nVersion: 1.0\nRequires-Dist: six>=1.5\n"
        'Requires-Dist: pytz; extra == "tz"\n\nlong description\n'
    )
    with pytest.raises(build.BuildError, match=r"requires 'six>=1.5'.*add it to PINS"):
        build.check_requirements(tmp_path)


def test_prune_keeps_code_licences_and_metadata_headers(tmp_path: Path) -> None:
    files = {
        "pkg/__init__.py": "x = 1",
        "pkg/tests/test_pkg.py": "",
        "pkg/__pycache__/__init__.cpython-311.pyc": "",
        "pkg/types.pyi": "",
        "pkg-1.0.dist-info/METADATA": "Name: pkg\nVersion: 1.0\n\nA very long README\n",
        "pkg-1.0.dist-info/RECORD": "",
        "pkg-1.0.dist-info/licenses/LICENSE.txt": "MIT",
        "bin/pkg": "#!/bin/sh",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    build.prune(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/licenses/LICENSE.txt",
        "pkg/__init__.py",
    ]
    assert (tmp_path / "pkg-1.0.dist-info/METADATA").read_text() == "Name: pkg\nVersion: 1.0\n"


# -- pip install . ------------------------------------------------------------------------------


def _can_build_offline() -> bool:
    """setuptools that can make wheels by itself (>= 70.1) or with the wheel package."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    from importlib.metadata import version

    major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1)


def test_pip_install_gives_a_dkron_command(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "dkron.py", source)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in build.OUR_PACKAGES:
        shutil.copytree(REPO / package, source / package, ignore=ignore)
    if (REPO / "README.md").exists():
        shutil.copy(REPO / "README.md", source)
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    # Let the new environment see this one's packages (setuptools for the build backend) so
    # the install needs no network; our package itself must come from the install.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    install += ["--disable-pip-version-check", "--no-input", "--quiet"]
    if _can_build_offline():
        install.append("--no-build-isolation")
    proc = subprocess.run(
        [*install, str(source)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [str(venv / "bin" / "dkron"), "version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Name: {dkron_pkg.NAME}\nVersion: {dkron_pkg.__version__}\n")
    proc = subprocess.run(
        [str(venv / "bin" / "dkron"), "agent", "--rpc-port", "x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == 'dkron: error: flag --rpc-port: expected an integer, got "x"\n'


def readme_first_job() -> dict:
    """The job the README's first `curl ... -d '{...}'` example creates."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"curl -s localhost:8080/v1/jobs [^\n]*-d '(\{.*?\})'", text, re.DOTALL)
    assert found, "the README's first example no longer creates a job with curl -d"
    return json.loads(found.group(1))


def test_the_pyz_runs_a_working_node_from_an_empty_folder(pyz: Path, tmp_path: Path) -> None:
    """The first README command, minus the build: a node that stores and runs jobs."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",  # no site-packages: the node runs on the standard library and the archive
            str(pyz),
            "agent",
            "--server",
            "--bootstrap-expect",
            "1",
            "--http-addr",
            f"127.0.0.1:{port}",
            "--bind-addr",
            "127.0.0.1:0",
            "--rpc-port",
            "0",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method)
        if data is not None:  # as the README's curl line: -H 'Content-Type: application/json'
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert call("GET", "/health")[0] == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        job = readme_first_job()
        name = job["name"]
        assert call("POST", "/v1/jobs", job)[0] == 201
        assert call("POST", f"/v1/jobs/{name}/run")[0] == 202
        for _ in range(100):
            _, runs = call("GET", f"/v1/jobs/{name}/executions")
            if runs and not runs[0]["finished_at"].startswith("0001"):
                break
            time.sleep(0.1)
        # The README's first job succeeds as written, on its first attempt.
        assert runs[0]["success"] is True and runs[0]["attempt"] == 1, runs[0]
        assert runs[0]["output"].strip(), runs[0]
        assert (tmp_path / "dkron.data").is_dir()  # data in a local folder by default
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""The structure the code promises: no import cycles among dkron_pkg's modules, and launch
cores that do no I/O of their own (the simulation can only drive them if they take the time and
the network as inputs)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dkron_pkg",)
IO_MODULES = {"time", "threading", "socket", "subprocess", "os", "select", "asyncio", "sqlite3"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module `path` imports, anywhere in the file (type-only imports too)."""
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            names = [n if n in modules else base for n in names]
        else:
            continue
        found.update(n for n in names if n in modules and n != own)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_project_has_no_import_cycles() -> None:
    graph = import_graph()
    assert graph.get("dkron_pkg.agent"), "the graph must be read"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = import_graph()
    graph["dkron_pkg.store"] = graph["dkron_pkg.store"] | {"dkron_pkg.agent"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert "dkron_pkg.agent" in cycle and "dkron_pkg.store" in cycle


def test_nothing_imports_the_agent_but_the_entry_points() -> None:
    graph = import_graph()
    importers = sorted(m for m, deps in graph.items() if "dkron_pkg.agent" in deps)
    assert importers == ["dkron_pkg.cli"], importers


def test_launch_cores_do_no_io_of_their_own() -> None:
    for path in sorted((ROOT / "dkron_pkg" / "launch").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & IO_MODULES, f"{path.name} imports {names & IO_MODULES}"
        graph = import_graph()
        deps = graph[module_name(path)]
        assert not {d for d in deps if d.startswith("dkron_pkg.") and "launch" not in d} - {
            "dkron_pkg.dispatch",
            "dkron_pkg.scheduler",
            "dkron_pkg.timefmt",
        }, f"{path.name} depends on {deps}"


def test_the_simulation_takes_its_launch_decisions_from_the_shipped_core() -> None:
    source = (ROOT / "tests" / "launchsim.py").read_text()
    tree = ast.parse(source)
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dkron_pkg")
        for alias in node.names
    }
    assert "LeaderCore" in imported and "NodeCore" in imported, imported
    # Settlement is a decision: the simulation must not take it itself.
    assert "settle" not in imported and "launch_settle" not in imported, imported
    assert "def _settle" not in source and "def _dispatch_retry" not in source

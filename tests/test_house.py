"""The shape of the code: small functions and modules, packages that import one way, one home for background work.

docs/architecture.md draws the layers; these checks keep the code on them. They read the source (ast), so a
failure names the file, the function or the import that crossed a line.
"""
import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
MAX_FUNCTION_LINES = 40
MAX_MODULE_LINES = 300

# Which top-level room may import which. A models module (`app/<room>/models.py`, `app/models.py`) is the lowest
# layer: any room may read another's tables, so imports of models modules are not edges here.
NEVER = {
    "devices": {"terminals", "recording", "auth", "teams"},
    "auth": {"devices", "terminals", "recording", "teams"},
    "audit": {"auth", "devices", "teams", "terminals", "recording", "access", "session_ends", "jobs"},
    "recording": {"terminals", "devices", "auth", "teams", "access"},
}


def _modules():
    """Yield (dotted module name, path, parsed tree) for every module under app/."""
    for path in sorted(APP.rglob("*.py")):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(), str(path))


def _imported(name, path, tree):
    """Yield the app modules that the module imports (relative imports resolved; `from x import y` may name y)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "app")
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            if base.split(".")[0] != "app":
                continue
            for alias in node.names:  # `from app.x import models` imports the module app.x.models
                yield f"{base}.{alias.name}" if (APP.parent / f"{base}.{alias.name}".replace(".", "/")).with_suffix(
                    ".py").exists() or (APP.parent / f"{base}.{alias.name}".replace(".", "/")).is_dir() else base


def _room(module):
    """Return the top-level room of an app module: 'terminals' for app.terminals.live, '' for app itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges():
    """Return {(from room, to room): [example import]} over every import that is not of a models module."""
    edges = {}
    for name, path, tree in _modules():
        for target in _imported(name, path, tree):
            if target.split(".")[-1] == "models":
                continue
            a, b = _room(name), _room(target)
            if a and b and a != b:
                edges.setdefault((a, b), []).append(f"{name} imports {target}")
    return edges


def test_no_function_is_longer_than_forty_lines():
    long = [f"{path.relative_to(APP.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for _, path, tree in _modules() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_no_module_is_longer_than_three_hundred_lines():
    big = [f"{path.relative_to(APP.parent)} ({n} lines)" for _, path, _ in _modules()
           if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert big == []


def test_rooms_import_one_way():
    crossed = [example for (a, b), examples in _edges().items() if b in NEVER.get(a, ()) for example in examples]
    assert crossed == []


def test_no_import_cycle_between_rooms():
    graph = {}
    for a, b in _edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start, goal, seen):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in graph.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if reaches(b, a, {b}))
    assert cycles == []


@pytest.mark.parametrize("call", ["threading.Thread(", "gevent.spawn(", "Greenlet(", "start_new_thread("])
def test_only_the_jobs_module_starts_background_work_on_a_schedule(call):
    # A terminal's own pump and writer (bridge) are its parts, not scheduled work, and so are the two ends of a
    # resume relayed between processes; everything else runs as a job.
    allowed = {"app/jobs/driver.py", "app/terminals/bridge.py", "app/terminals/live.py",
               "app/terminals/resume_holder.py", "app/terminals/resume_relay.py"}
    starters = sorted(str(path.relative_to(APP.parent)) for _, path, _ in _modules() if call in path.read_text())
    assert [path for path in starters if path not in allowed] == []

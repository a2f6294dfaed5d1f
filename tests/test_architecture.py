"""The layering of the packages: ``world_model`` (the core) imports nothing above it, nothing imports ``agents``
(the top), and no modules import each other in a circle, counting the imports inside functions (they hide
circles, they do not remove them)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("world_model", "lingbot_env", "distillation", "agents")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (anywhere in the file), resolved to existing module names."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {  # `if TYPE_CHECKING:` imports never run
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != me:
                found.add(n)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def test_core_imports_nothing_above_it():
    bad = {
        m: sorted(d for d in deps if d.split(".")[0] in ("lingbot_env", "distillation"))
        for m, deps in graph().items()
        if m.split(".")[0] == "world_model"
    }
    assert not {m: d for m, d in bad.items() if d}, "world_model must not import lingbot_env or distillation"


def test_nothing_imports_the_agents():
    """``agents`` (the transfer task, heads training, PPO) sits on top: it uses everything, nothing uses it."""
    bad = {m: sorted(d for d in deps if d.split(".")[0] == "agents") for m, deps in graph().items()}
    assert not {m: d for m, d in bad.items() if d and m.split(".")[0] != "agents"}, bad


def test_no_import_circles():
    g = graph()
    # A package's __init__ re-exporting its submodules is not a circle of logic: leave those edges out.
    edges = {m: {d for d in deps if not (g.get(d) is not None and d.startswith(m + "."))} for m, deps in g.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles[:10])


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted circle and a planted upward import are found."""
    pkg = tmp_path / "world_model"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from world_model import b\n")
    (pkg / "b.py").write_text("from world_model.a import f\nimport lingbot_env.x\n")
    (tmp_path / "lingbot_env").mkdir()
    (tmp_path / "lingbot_env" / "__init__.py").write_text("")
    (tmp_path / "lingbot_env" / "x.py").write_text("")
    (tmp_path / "distillation").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    g = graph()
    assert "world_model.b" in g["world_model.a"] and "world_model.a" in g["world_model.b"]
    assert "lingbot_env.x" in g["world_model.b"]
    import pytest

    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circles()
    with pytest.raises(AssertionError, match="must not import"):
        test_core_imports_nothing_above_it()

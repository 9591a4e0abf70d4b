"""The package's layering: every import of every module (function-level ones too) points down a floor.

    cli -> train -> eval -> video -> inference -> search -> losses -> {data, models, ops, viz} -> pixtrace
        -> {_cpp, kernels} -> config -> utils

Rooms on one floor do not import each other; nothing imports ``cli``; ``kernels`` import only torch, triton,
the standard library and ``copynce_fast.kernels``. A new room (a new subpackage) fails here until it is given a
floor in ``FLOORS``: where it sits is a decision, not an accident.

Inside a room, modules import each other without a cycle (module by module, function-level imports too): when two
modules need each other, the piece they share moves down into a module of its own. The benchmark scripts, which
import each other by bare name, are held to the same rule.
"""
import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {
    "cli": 11, "train": 10, "eval": 9, "video": 8, "inference": 7, "search": 6, "losses": 5,
    "data": 4, "models": 4, "ops": 4, "viz": 4,
    "pixtrace": 3, "_cpp": 2, "kernels": 2, "config": 1, "utils": 0,
}
KERNEL_IMPORTS = {"torch", "triton", "__future__"}  # plus the standard library and copynce_fast.kernels


def discover() -> dict[str, Path]:
    """Module name -> file, for copynce_fast and the kernels/ folder setup.py maps to copynce_fast.kernels."""
    mods = {}
    for base, prefix in ((ROOT / "copynce_fast", ["copynce_fast"]), (ROOT / "kernels", ["copynce_fast", "kernels"])):
        for path in base.rglob("*.py"):
            parts = prefix + list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def imports(name: str, path: Path) -> list[tuple[str, str | None]]:
    """Every import in the file, at any depth: ``(module, imported name or None)``; relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            out += [(module, a.name) for a in node.names]
    return out


def resolve(module: str, name: str | None, mods: dict[str, Path], seen=()) -> str | None:
    """The module an import really reaches inside the package (through package faces' re-exports), or None
    for a name a package face defines itself (``copynce_fast.__version__``) or a module outside the package."""
    if not (module == "copynce_fast" or module.startswith("copynce_fast.")):
        return None
    if name is not None and f"{module}.{name}" in mods | {"copynce_fast._C": None}:
        return f"{module}.{name}"
    if name is None or module not in mods or mods[module].name != "__init__.py" or module in seen:
        return module
    for sub, sub_name in imports(module, mods[module]):  # a package face: follow the name to its definition
        if sub_name == name:
            return resolve(sub, name, mods, seen + (module,))
    return None


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "face"
    return "_cpp" if parts[1] == "_C" else parts[1]


def edges(mods: dict[str, Path]) -> list[tuple[str, str]]:
    """(importer, imported) module pairs inside the package."""
    out = []
    for name, path in mods.items():
        for module, imported in imports(name, path):
            target = resolve(module, imported, mods)
            if target is not None and target != name:
                out.append((name, target))
    return out


def violations(edge_list: list[tuple[str, str]]) -> list[str]:
    """Upward or sideways edges between rooms, imports of cli, rooms without a floor, and room cycles."""
    bad, graph = [], {}
    for src, dst in edge_list:
        a, b = room(src), room(dst)
        if a == b or "face" in (a, b):  # the root package itself: every import runs it anyway
            continue
        if b == "cli":
            bad.append(f"{src} imports {dst}: nothing imports the CLI")
        for r in (a, b):
            if r not in FLOORS:
                bad.append(f"{r} (from {src} -> {dst}) has no floor in tests/test_layering.py FLOORS")
        if a in FLOORS and b in FLOORS and FLOORS[b] >= FLOORS[a]:
            bad.append(f"{src} -> {dst}: {a} (floor {FLOORS[a]}) may only import lower floors, not {b} "
                       f"(floor {FLOORS[b]})")
        graph.setdefault(a, set()).add(b)
    state = {}

    def visit(r, stack):  # depth-first search for a cycle of rooms
        state[r] = "open"
        for nxt in sorted(graph.get(r, ())):
            if state.get(nxt) == "open":
                bad.append("room cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[r] = "done"

    for r in sorted(graph):
        if r not in state:
            visit(r, [r])
    return bad


def script_edges(folder: Path) -> list[tuple[str, str]]:
    """(importer, imported) pairs among the scripts of ``folder`` that import each other by bare name (the
    benchmarks put their own folder on ``sys.path``); names are ``<folder>.<stem>``."""
    stems = {p.stem for p in folder.glob("*.py")}
    out = []
    for path in sorted(folder.glob("*.py")):
        for module, _ in imports(path.stem, path):
            top = module.split(".")[0]
            if top in stems and top != path.stem:
                out.append((f"{folder.name}.{path.stem}", f"{folder.name}.{top}"))
    return out


def module_cycles(edge_list: list[tuple[str, str]]) -> list[list[str]]:
    """The import cycles of a module graph: each strongly connected component of two or more modules, sorted
    (Tarjan's algorithm; the graph has a few hundred nodes, recursion is fine)."""
    graph: dict[str, set[str]] = {}
    for src, dst in edge_list:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    order, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        order[v] = low[v] = len(order)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:  # v roots a component: pop it
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in order:
            visit(v)
    return sorted(found)


def kernel_violations(mods: dict[str, Path]) -> list[str]:
    allowed = KERNEL_IMPORTS | set(sys.stdlib_module_names)
    bad = []
    for name, path in mods.items():
        if room(name) != "kernels":
            continue
        for module, _ in imports(name, path):
            top = module.split(".")[0]
            if not (module.startswith("copynce_fast.kernels") or (top in allowed and top != "copynce_fast")):
                bad.append(f"{name} imports {module}: kernels import only torch, triton and copynce_fast.kernels")
    return bad


def test_every_import_points_down_a_floor():
    mods = discover()
    assert len(mods) > 50 and "copynce_fast.kernels.overlap" in mods  # the walk really sees the package
    found = edges(mods)
    assert ("copynce_fast.cli.search", "copynce_fast.search.knn") in found  # function-level imports count
    assert violations(found) == []


def test_no_import_cycle_between_modules():
    """Module by module (not only room by room): no two modules of the package, or of the benchmarks, need each
    other, directly or around a longer loop."""
    found = edges(discover())
    assert ("copynce_fast.data.pair_of_key", "copynce_fast.data.siblings") in found  # the walk sees in-room edges
    assert module_cycles(found) == []
    bench = script_edges(ROOT / "benchmarks")
    assert ("benchmarks.bench_official", "benchmarks.official_harness") in bench
    assert module_cycles(bench) == []


def test_the_cycle_check_can_fail():
    """Fake graphs: a two-module cycle, a three-module loop beside an acyclic branch, and a chain without one."""
    assert module_cycles([("a", "b"), ("b", "a")]) == [["a", "b"]]
    loop = [("p.x", "p.y"), ("p.y", "p.z"), ("p.z", "p.x"), ("p.z", "q.w"), ("q.w", "q.v")]
    assert module_cycles(loop) == [["p.x", "p.y", "p.z"]]
    assert module_cycles([("a", "b"), ("b", "c"), ("a", "c")]) == []


def test_the_script_walk_sees_bare_imports(tmp_path):
    (tmp_path / "one.py").write_text("import two as T\n")
    (tmp_path / "two.py").write_text("def f():\n    import one\n    import numpy\n")
    found = script_edges(tmp_path)
    assert sorted(found) == [(f"{tmp_path.name}.one", f"{tmp_path.name}.two"),
                             (f"{tmp_path.name}.two", f"{tmp_path.name}.one")]
    assert module_cycles(found) == [sorted(f"{tmp_path.name}.{m}" for m in ("one", "two"))]


def test_kernels_import_only_torch_and_triton():
    assert kernel_violations(discover()) == []


def test_the_checks_can_fail():
    """Fake edges and a fake kernel: each breaks one rule, and each is reported."""
    fake = [
        ("copynce_fast.data.sources", "copynce_fast.train.loop"),  # upward
        ("copynce_fast.models.vit", "copynce_fast.ops.copynce"),  # sideways, same floor
        ("copynce_fast.eval.metrics", "copynce_fast.cli.search"),  # imports the CLI
        ("copynce_fast.gadgets.x", "copynce_fast.utils.device"),  # a room without a floor
    ]
    found = violations(fake)
    assert len([m for m in found if "may only import lower floors" in m]) == 3
    assert any("nothing imports the CLI" in m for m in found) and any("gadgets" in m for m in found)
    cycle = FLOORS.copy()
    try:  # equal floors are refused before a cycle can form; flatten them to see the cycle check itself
        FLOORS.update({k: -1 for k in FLOORS})
        assert any(m.startswith("room cycle") for m in violations([("copynce_fast.data.a", "copynce_fast.ops.b"),
                                                                   ("copynce_fast.ops.b", "copynce_fast.data.a")]))
    finally:
        FLOORS.clear()
        FLOORS.update(cycle)


def test_the_kernel_check_can_fail(tmp_path, monkeypatch):
    bad = tmp_path / "bad_kernel.py"
    bad.write_text("import numpy\nfrom copynce_fast.ops import overlap\nimport torch\n")
    found = kernel_violations({"copynce_fast.kernels.bad_kernel": bad})
    assert len(found) == 2 and "numpy" in found[0] and "copynce_fast.ops" in found[1]


@pytest.mark.parametrize("module, name, want", [
    ("copynce_fast", "CopyNCELoss", "copynce_fast.losses"),  # through the root face
    ("copynce_fast", "__version__", None),  # defined by the face itself
    ("copynce_fast", "_cpp", "copynce_fast._cpp"),  # a submodule
    ("copynce_fast.data", "PairLoader", "copynce_fast.data.torch_loader"),  # a package face's re-export
    ("numpy", "ndarray", None),  # outside the package
])
def test_imports_resolve_to_the_defining_module(module, name, want):
    assert resolve(module, name, discover()) == want

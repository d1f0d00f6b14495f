"""The import graph of `src/chargebrain`: imports point one way (api → control → core, never back).

The graph is read with `ast`, not by importing: a node is a module, an edge a runtime import —
at module level or inside a function (a lazy import still ties the two modules together), but
not under `if TYPE_CHECKING:` (type hints only, never executed). Importing `a.b.c` also runs
`a/__init__` and `a/b/__init__`, so those are edges too, except the importer's own packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import chargebrain

SRC = Path(chargebrain.__file__).resolve().parent.parent
# Packages (or modules) that must not take part in an import circle, nor import each other in
# a circle: api/, app.py and control/.
GUARDED = ("chargebrain.api", "chargebrain.app", "chargebrain.control")


def module_files(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every module under `src/package`."""
    files: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imported_names(module: str, is_package: bool, tree: ast.AST) -> set[str]:
    """Every dotted name `module` imports at runtime (absolute; relative imports resolved)."""
    names: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            elif isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[:len(package) - (child.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in child.names)
            else:
                stack.append(child)
    return names


def import_graph(src: Path, package: str = "chargebrain") -> dict[str, set[str]]:
    """Module → the modules of the same tree it imports at runtime."""
    files = module_files(src, package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets: set[str] = set()
        for name in _imported_names(module, path.name == "__init__.py",
                                    ast.parse(path.read_text(), str(path))):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target != module and (
                        i == len(parts) or target not in own_packages):
                    targets.add(target)
        graph[module] = targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The graph's circles: its strongly connected components with more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _unit(module: str) -> str | None:
    return next((g for g in GUARDED if module == g or module.startswith(g + ".")), None)


def guarded_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Module circles touching a guarded unit, and circles between the guarded units."""
    circles = [sorted(c) for c in strongly_connected(graph)
               if any(_unit(m) is not None for m in c)]
    units: dict[str, set[str]] = {g: set() for g in GUARDED}
    for module, targets in graph.items():
        source = _unit(module)
        if source is None:
            continue
        units[source].update(u for t in targets if (u := _unit(t)) not in (None, source))
    circles += [sorted(c) for c in strongly_connected(units)]
    return circles


def test_no_import_circle_among_api_app_control():
    graph = import_graph(SRC)
    assert "chargebrain.api.http" in graph and "chargebrain.control.cycle" in graph
    assert guarded_circles(graph) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_reintroduced_circle_is_found(tmp_path):
    _write(tmp_path, {
        "chargebrain/__init__.py": "",
        "chargebrain/app.py": "from chargebrain.api.http import serve\n",
        "chargebrain/api/__init__.py": "",
        "chargebrain/api/http.py": "def serve():\n    from chargebrain.api import auth\n",
        "chargebrain/api/auth.py": "from chargebrain.api.http import serve\n",
        "chargebrain/control/__init__.py": "",
        "chargebrain/control/cycle.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from chargebrain.app import App\n"),
    })
    graph = import_graph(tmp_path)
    assert guarded_circles(graph) == [["chargebrain.api.auth", "chargebrain.api.http"]]
    # control → app only under TYPE_CHECKING: no edge. At runtime, a circle between packages.
    _write(tmp_path, {"chargebrain/api/auth.py": "",
                      "chargebrain/app.py": "from chargebrain.api import request\n",
                      "chargebrain/control/cycle.py": "import chargebrain.app\n",
                      "chargebrain/api/request.py": "from . import handlers\n",
                      "chargebrain/api/handlers.py": "from ..control.cycle import run\n"})
    assert guarded_circles(import_graph(tmp_path)) == [
        ["chargebrain.api.handlers", "chargebrain.api.request", "chargebrain.app",
         "chargebrain.control.cycle"],
        ["chargebrain.api", "chargebrain.app", "chargebrain.control"]]


def test_a_circle_between_packages_without_a_module_circle_is_found(tmp_path):
    _write(tmp_path, {
        "chargebrain/__init__.py": "",
        "chargebrain/api/__init__.py": "",
        "chargebrain/api/http.py": "from chargebrain.control.cycle import run\n",
        "chargebrain/api/errors.py": "",
        "chargebrain/control/__init__.py": "",
        "chargebrain/control/cycle.py": "",
        "chargebrain/control/limits.py": "from chargebrain.api.errors import ApiError\n",
    })
    graph = import_graph(tmp_path)
    assert strongly_connected(graph) == []
    assert guarded_circles(graph) == [["chargebrain.api", "chargebrain.control"]]

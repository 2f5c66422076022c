"""The house rules of the layout (DESIGN.md, Layout): no two files of ``cinefuse/`` import each
other, over a chain of any length, no private ``_name`` is imported from another file, no
function is longer than 80 lines and no module longer than 500 (a newcomer reads a function in
one screen and a module in one sitting).

The import graph is read with ``ast`` from the source, so imports inside functions count as
much as those at the top (a lazy import still ties the two files together). Only explicit
imports are edges: a parent package's ``__init__`` that Python runs on the way is not one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cinefuse"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package`` (``__init__`` is the package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for every import in the file that
    lands in ``modules``; ``from pkg import sub`` is an import of ``pkg.sub`` when that is a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node, is_package)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    found.append((sub, None, node.lineno))
                elif source in modules:
                    found.append((source, alias.name, node.lineno))
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {m: {target for target, _, _ in imports_of(m, p, modules) if target != m} for m, p in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one file (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def private_imports(package: Path) -> list[str]:
    """``file:line imports _name from module`` for each private name taken from another file
    (dunders such as ``__version__`` are public)."""
    modules = module_files(package)
    out = []
    for module, path in modules.items():
        for target, name, line in imports_of(module, path, modules):
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                out.append(f"{path.relative_to(package.parent)}:{line} imports {name} from {target}")
    return out


def test_no_import_cycles_between_files():
    cycles = import_cycles(import_graph(PACKAGE))
    assert not cycles, "files that import each other (directly or round a chain): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_private_name_imported_across_files():
    found = private_imports(PACKAGE)
    assert not found, "private names imported from another file: " + "; ".join(found)


# -- the checker itself, on small trees with a known answer ---------------------------------------
def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_a_long_cycle_through_a_function_level_import(tmp_path):
    pkg = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import thing\n",
        "b.py": "from .c import d\n",
        "c/__init__.py": "",
        "c/d.py": "def f():\n    import pkg.a\n",
        "e.py": "from pkg.a import thing\n",  # imports into the cycle, is not part of it
    })
    assert import_cycles(import_graph(pkg)) == [["pkg.a", "pkg.b", "pkg.c.d"]]
    (pkg / "c" / "d.py").write_text("def f():\n    return 1\n")
    assert import_cycles(import_graph(pkg)) == []


def test_checker_finds_private_names_but_not_dunders(tmp_path):
    pkg = _tree(tmp_path, {
        "__init__.py": "__version__ = '1'\n",
        "a.py": "_x = 1\n",
        "b.py": "from pkg import __version__\n\ndef f():\n    from .a import _x\n    return _x\n",
    })
    assert private_imports(pkg) == ["pkg/b.py:4 imports _x from pkg.a"]


MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500
# Functions allowed past MAX_FUNCTION_LINES, each with its reason (at most two; none today).
LONG_FUNCTIONS: dict[str, str] = {}


def oversized(package: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """``file: N lines`` for each module over MAX_MODULE_LINES and ``file:line name: N lines``
    for each function (or method) over MAX_FUNCTION_LINES, from its ``def`` line to its last line
    (decorators not counted), in ``package``, leaving out the files in ``skip`` (paths from the
    package's parent) and the functions named in LONG_FUNCTIONS (``file:name``)."""
    out = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent).as_posix()
        if where in skip:
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out.append(f"{where}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{where}:{node.name}" not in LONG_FUNCTIONS:
                    out.append(f"{where}:{node.lineno} {node.name}: {lines} lines (at most {MAX_FUNCTION_LINES})")
    return out


def test_no_function_over_80_lines_and_no_module_over_500():
    assert len(LONG_FUNCTIONS) <= 2, "at most two long functions may be named as exceptions"
    found = oversized(PACKAGE)
    assert not found, "split into named steps or modules that say their job: " + "; ".join(found)


def test_size_checker_finds_a_long_function_and_a_long_module(tmp_path):
    def lines(indent: str, count: int) -> str:
        return "".join(f"{indent}x{k} = {k}\n" for k in range(count))

    pkg = _tree(tmp_path, {
        "__init__.py": "",
        "short.py": "def f():\n" + lines("    ", MAX_FUNCTION_LINES - 1),  # exactly the limit
        "long.py": "class C:\n    def g(self):\n" + lines("        ", MAX_FUNCTION_LINES),  # one over
        "big.py": "\n" * MAX_MODULE_LINES + "z = 1\n",
    })
    assert oversized(pkg) == [f"pkg/big.py: {MAX_MODULE_LINES + 1} lines (at most {MAX_MODULE_LINES})",
                              f"pkg/long.py:2 g: {MAX_FUNCTION_LINES + 1} lines (at most {MAX_FUNCTION_LINES})"]
    assert oversized(pkg, skip=("pkg/big.py", "pkg/long.py")) == []


@pytest.mark.parametrize("room", ["metrics", "evaluate", "fuse"])
def test_rooms_stand_where_the_design_puts_them(room):
    """metrics stands on nothing above it, fuse never imports evaluate."""
    graph = import_graph(PACKAGE)
    forbidden = {"metrics": ("cinefuse.store", "cinefuse.fuse", "cinefuse.evaluate", "cinefuse.extract"),
                 "fuse": ("cinefuse.evaluate", "cinefuse.extract"),
                 "evaluate": ("cinefuse.extract",)}[room]
    bad = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith(f"cinefuse.{room}")
                 for t in targets if t.startswith(forbidden))
    assert not bad, bad

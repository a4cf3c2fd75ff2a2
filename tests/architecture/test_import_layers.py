"""The import layers of `app/`: core below every domain, no cycles between domains.

Every import counts, including those inside functions and under `TYPE_CHECKING`: a deferred
import hides a cycle from Python, not from the reader. The composition root (`app/*.py`: the
app factory, the CLI, the demo loader, the scheduled jobs, the models list) may import any
domain; no domain and nothing in core imports it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"

Edges = dict[tuple[str, str], list[str]]


def _unit(root: Path, path: Path) -> str:
    """`core`, a domain package's name, or `root:<module>` for the composition root."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else f"root:{parts[0].removesuffix('.py')}"


def _target(root: Path, module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != root.name or len(parts) < 2:
        return None
    head = parts[1]
    return head if (root / head).is_dir() else f"root:{head}"


def import_edges(root: Path) -> Edges:
    """(importer, imported) → where, for every import between two units of `root`."""
    edges: Edges = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        src = _unit(root, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif node.level == 0 and node.module:
                if node.module == root.name:  # from app import x
                    modules = [f"{root.name}.{a.name}" for a in node.names]
                else:
                    modules = [node.module]
            for module in modules:
                dst = _target(root, module)
                if dst is not None and dst != src:
                    where = f"{path.relative_to(root.parent)}:{node.lineno} imports {module}"
                    edges[(src, dst)].append(where)
    return edges


def cycles(edges: Edges) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph[b]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
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
        if v not in index:
            visit(v)
    return found


def _explain(edges: Edges, component: list[str]) -> str:
    inside = set(component)
    lines = [" <-> ".join(component)]
    for (a, b), where in sorted(edges.items()):
        if a in inside and b in inside:
            lines += [f"  {w}" for w in where]
    return "\n".join(lines)


def test_no_import_cycles_between_domains() -> None:
    edges = import_edges(APP)
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(_explain(edges, c) for c in found)


def test_core_imports_no_domain() -> None:
    edges = import_edges(APP)
    wrong = [w for (a, b), where in edges.items() if a == "core" for w in where]
    assert not wrong, "core must not import a domain or the app:\n" + "\n".join(wrong)


def test_no_domain_imports_the_composition_root() -> None:
    edges = import_edges(APP)
    wrong = [
        w
        for (a, b), where in edges.items()
        if not a.startswith("root:") and b.startswith("root:")
        for w in where
    ]
    assert not wrong, "domains must not import app/*.py modules:\n" + "\n".join(wrong)


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "app"


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    app = _write(
        tmp_path,
        {
            "a/__init__.py": "",
            "a/service.py": "from app.b import service\n",
            "b/__init__.py": "",
            "b/service.py": "def f():\n    from app.a.service import g\n",
            "c/__init__.py": "",
            "c/service.py": "import app.a.service\n",
            "main.py": "from app import c\n",
        },
    )
    edges = import_edges(app)
    assert cycles(edges) == [["a", "b"]]
    assert edges[("b", "a")] == ["app/b/service.py:2 imports app.a.service"]
    assert edges[("root:main", "c")] == ["app/main.py:1 imports app.c"]


def test_the_check_passes_a_layered_tree(tmp_path: Path) -> None:
    app = _write(
        tmp_path,
        {
            "core/db.py": "",
            "a/service.py": "from app.core import db\n",
            "b/service.py": "from app.a import service\nfrom app.core.db import x\n",
        },
    )
    assert cycles(import_edges(app)) == []

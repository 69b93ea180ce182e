"""The package's layout, measured: lines per module and who imports whom (first-party imports only).

    .venv/bin/python tests/layout.py            # lines per module, then the import graph
    .venv/bin/python tests/layout.py --dot      # the import graph as Graphviz dot

``RULES`` is docs/layout.md's "who imports whom" in code; tests/test_layout.py checks the graph against it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"restartbench": REPO / "restartbench", "restartbench.analysis": REPO / "analysis"}

#: layer -> the layers its modules may import (a module's layer: the first rule its name starts with)
LAYERS = [
    ("restartbench.cli", "cli"), ("restartbench.__main__", "cli"), ("restartbench.__init__", "api"),
    ("restartbench.matrix", "jobs"), ("restartbench.bisect", "jobs"), ("restartbench.explore", "jobs"),
    ("restartbench.controls", "jobs"), ("restartbench.health", "jobs"), ("restartbench.asvhtml", "tools"),
    ("restartbench.analysis", "analysis"), ("restartbench.hosts", "hosts"),
    ("restartbench.run", "run"), ("restartbench.installations", "run"), ("restartbench.load", "run"),
    ("restartbench.census", "run"), ("restartbench.scenarios", "run"), ("restartbench.apps", "run"),
    ("restartbench.reaper", "bottom"),
    ("restartbench.procs", "helpers"), ("restartbench.net", "helpers"), ("restartbench.arches", "helpers"),
    ("restartbench.tools", "helpers"), ("restartbench.events", "helpers"),
    ("restartbench.results", "contract"), ("restartbench.metadata", "contract"),
    ("restartbench.errors", "bottom"), ("restartbench.versions", "bottom"),
]
RULES = {
    "bottom": set(),
    "contract": {"bottom", "contract"},
    "helpers": {"bottom", "contract", "helpers"},
    "hosts": {"bottom", "contract", "helpers", "hosts"},
    "run": {"bottom", "contract", "helpers", "hosts", "run"},
    "analysis": {"bottom", "contract", "hosts", "analysis"},
    "jobs": {"bottom", "contract", "helpers", "hosts", "run", "analysis", "jobs"},
    "tools": {"bottom"},
    "api": {"contract", "run", "helpers"},
    "cli": {"bottom", "contract", "helpers", "hosts", "run", "analysis", "jobs", "tools", "cli"},
}
#: the edges RULES forbid that are deliberate (docs/layout.md says why)
EXCEPTIONS = {
    # a build records which catalogued fixes it contains (the catalogue is data; read once, at build time)
    ("restartbench.hosts.unit.build", "restartbench.analysis.catalogue"),
}


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for pkg, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"] if rel.name == "__init__" else list(rel.parts)
            name = ".".join([pkg, *parts]) if parts else pkg
            if name == "restartbench.analysis" and pkg == "restartbench" and path.parent == REPO / "restartbench":
                continue
            out[name if not (rel.name == "__init__" and pkg == "restartbench" and not parts) else "restartbench.__init__"] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(name: str, path: Path) -> set[str]:
    """The first-party modules ``name`` imports (at any depth; ``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if _is_package(path) else name.rpartition(".")[0]
    if name == "restartbench.__init__":
        package = "restartbench"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("restartbench"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.startswith("restartbench"):
                    found.add(mod)
                    found.update(f"{mod}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    known = modules()
    out = set()
    for mod in found:                       # "from . import hosts" names a module; "from .x import f" does not
        while mod and mod not in known and mod != "restartbench":
            mod = mod.rpartition(".")[0]
        if mod and mod in known and mod != name:
            out.add(mod)
    return out


def graph() -> dict[str, set[str]]:
    return {name: imports(name, path) for name, path in modules().items()}


def layer(name: str) -> str:
    """The layer of module ``name`` ("unassigned" for one LAYERS does not place: a violation)."""
    return next((lay for prefix, lay in LAYERS if name == prefix or name.startswith(prefix + ".")), "unassigned")


def violations() -> list[str]:
    """Every import RULES forbid (and EXCEPTIONS do not allow)."""
    out = [f"{mod} has no layer: add it to LAYERS in tests/layout.py and to docs/layout.md"
           for mod in sorted(modules()) if layer(mod) == "unassigned"]
    for mod, deps in sorted(graph().items()):
        for dep in sorted(deps):
            if layer(dep) not in RULES.get(layer(mod), ()) and (mod, dep) not in EXCEPTIONS:
                out.append(f"{mod} ({layer(mod)}) imports {dep} ({layer(dep)})")
    return out


def lines() -> dict[str, int]:
    return {name: len(path.read_text().splitlines()) for name, path in modules().items()}


def main(argv: list[str]) -> int:
    g = graph()
    if "--dot" in argv:
        print("digraph restartbench {\n  rankdir=BT;")
        for mod, deps in sorted(g.items()):
            for dep in sorted(deps):
                print(f'  "{mod}" -> "{dep}";')
        print("}")
        return 0
    n = lines()
    width = max(map(len, n))
    print(f"{'module':<{width}}  lines  layer       imports")
    for mod in sorted(n):
        short = ", ".join(sorted(d.removeprefix("restartbench.") for d in g[mod]))
        print(f"{mod:<{width}}  {n[mod]:5d}  {layer(mod):<10}  {short}")
    print(f"{'total':<{width}}  {sum(n.values()):5d}")
    bad = violations()
    print("\nimports against docs/layout.md: " + ("none" if not bad else "\n  " + "\n  ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

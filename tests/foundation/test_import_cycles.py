"""The layers import downwards only: no file-level import cycle in bot/, handlers/, services/, config/.

A module depends on every module it names in an import statement, lazy imports inside functions and
``TYPE_CHECKING`` blocks included. ``from pkg import name`` depends on the package
``pkg`` (its ``__init__``, whose namespace the name is read from) and on ``pkg.name`` when that is a module: an
``__init__`` that re-exports its submodules while they import from the package is a cycle. The front end's
builders and console (``bot/blocks``, ``bot/console``, ``bot/text``) never import ``handlers``: they render what
``services`` returns; ``services`` and ``config`` never import the front ends, and ``config`` (the bottom
layer) imports nothing from ``services``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from services.db import PROJECT_ROOT

PACKAGES = ("bot", "handlers", "services", "config")
FRONT_END_RENDERERS = ("bot.blocks", "bot.console", "bot.text")


def modules_under(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name → file, for every module of ``packages`` under ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module → the modules of ``packages`` it imports (see the module docstring for what counts)."""
    modules = modules_under(root, packages)

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        own_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(filter(None, (known(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                    source = ".".join([*base, node.module] if node.module else base)
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        deps.add(f"{source}.{alias.name}")
                    if source in modules:
                        deps.add(source)
                    elif target := known(source):
                        deps.add(target)
        deps.discard(module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PROJECT_ROOT)) == []


def test_renderers_do_not_import_handlers() -> None:
    graph = import_graph(PROJECT_ROOT)
    offenders = {
        module: sorted(dep for dep in deps if dep == "handlers" or dep.startswith("handlers."))
        for module, deps in graph.items()
        if module.startswith(FRONT_END_RENDERERS)
    }
    assert {module: deps for module, deps in offenders.items() if deps} == {}


def test_services_and_config_do_not_import_front_ends() -> None:
    graph = import_graph(PROJECT_ROOT)
    upward = {
        module: sorted(dep for dep in deps if dep.split(".")[0] in {"bot", "handlers"})
        for module, deps in graph.items()
        if module.split(".")[0] in {"services", "config"}
    }
    config_on_services = {
        module: sorted(dep for dep in deps if dep.split(".")[0] == "services")
        for module, deps in graph.items()
        if module.split(".")[0] == "config"
    }
    assert {m: d for m, d in upward.items() if d} == {}
    assert {m: d for m, d in config_on_services.items() if d} == {}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_direct_cycle_a_lazy_one_and_a_reexport(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/a.py": "from app.b import thing\n",
            "app/b.py": "def f():\n    from app import a\n",
            "app/pkg/__init__.py": "from app.pkg.one import x\n",
            "app/pkg/one.py": "from app.pkg import two\n",
            "app/pkg/two.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.pkg import one\n",
            "app/clean/__init__.py": "",
            "app/clean/one.py": "from app.clean import two\n",
            "app/clean/two.py": "from . import three\n",
            "app/clean/three.py": "x = 1\n",
        },
    )
    graph = import_graph(tmp_path, ("app",))
    assert graph["app.clean.two"] == {"app.clean", "app.clean.three"}
    assert cycles(graph) == [["app.a", "app.b"], ["app.pkg", "app.pkg.one", "app.pkg.two"]]


def test_a_submodule_importing_from_its_reexporting_package_is_a_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/blocks/__init__.py": "from app.blocks.card import build\n",
            "app/blocks/format.py": "x = 1\n",
            "app/blocks/card.py": "from app.blocks import format as fmt\n",
            "app/user.py": "import app.blocks.format\n",
        },
    )
    graph = import_graph(tmp_path, ("app",))
    assert graph["app.user"] == {"app.blocks.format"}
    assert cycles(graph) == [["app.blocks", "app.blocks.card"]]
    (tmp_path / "app/blocks/__init__.py").write_text('"""Builders; import them from their modules."""\n')
    assert cycles(import_graph(tmp_path, ("app",))) == []

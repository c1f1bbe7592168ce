"""The package's shape: imports point down the layers, and classes stay small.

The layers, bottom up (see docs/architecture.rst):

0. foundations: config, utils, proxies, access, endpoints, systemd, the channel layers,
   and the host *interface* (``daphne.hosts`` itself);
1. ``daphne.http``: what every HTTP version shares (exchange, header rules,
   scope, errors, pages);
2. ``daphne.websocket`` (handshake, session, engine) and the application
   sides (``daphne.hosts.app``, ``.layer``, ``.detect``), which never import
   each other;
3. ``daphne.protocols``: the connections;
4. ``daphne.server``;
5. entry points: the command line, ``daphne.testing``, and the Django app
   (``daphne.apps``, ``daphne.checks``, ``daphne.management``).

A module may import from a lower layer, or from its own package in its own
layer; never upward, never sideways into another package, and never in a
cycle, whether the import is at the top of the module or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "daphne"

#: Module name or package prefix -> (layer, group); the longest match wins.
#: Within a layer, a module imports only from its own group.
LAYERS = {
    "daphne": (0, "base"),
    "daphne.config": (0, "base"),
    "daphne.utils": (0, "base"),
    "daphne.proxies": (0, "base"),
    "daphne.access": (0, "base"),
    "daphne.endpoints": (0, "base"),
    "daphne.systemd": (0, "base"),
    "daphne.shared_ports": (0, "base"),
    "daphne.layers": (0, "base"),
    "daphne.twisted": (0, "base"),
    "daphne.hosts": (0, "base"),
    "daphne.http": (1, "http"),
    "daphne.websocket": (2, "websocket"),
    "daphne.hosts.app": (2, "hosts"),
    "daphne.hosts.layer": (2, "hosts"),
    "daphne.hosts.detect": (2, "hosts"),
    "daphne.protocols": (3, "protocols"),
    "daphne.server": (4, "server"),
    "daphne.cli": (5, "entry"),
    "daphne.cli_options": (5, "entry"),
    "daphne.reloader": (5, "entry"),
    "daphne.supervisor": (5, "entry"),
    "daphne.__main__": (5, "entry"),
    "daphne.testing": (5, "entry"),
    "daphne.worker": (5, "entry"),
    # The Django app: only Django imports it (INSTALLED_APPS = ["daphne", ...]).
    "daphne.apps": (5, "entry"),
    "daphne.checks": (5, "entry"),
    "daphne.management": (5, "entry"),
}

#: Test code shipped for third-party channel layers: exempt from the size rule.
LARGE_CLASSES_ALLOWED = {("daphne/layers/conformance.py", "ChannelLayerConformance")}

MAX_CLASS_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> tuple[int, str]:
    """The (layer, group) that governs module ``name``."""
    best = max(
        (
            prefix
            for prefix in LAYERS
            if name == prefix or name.startswith(prefix + ".")
        ),
        key=len,
    )
    return LAYERS[best]


def imports_of(name: str) -> set[str]:
    """daphne modules that ``name`` imports, anywhere in its body."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one.
            targets = [
                f"{module}.{alias.name}"
                if f"{module}.{alias.name}" in MODULES
                else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("daphne") and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in graph.items():
        own, own_group = layer_of(name)
        for target in sorted(targets):
            layer, group = layer_of(target)
            if layer < own or (layer == own and group == own_group):
                continue
            problems.append(f"{name} (layer {own}) imports {target} (layer {layer})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for name in MODULES:
        assert layer_of(name), name


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_imports_point_down_the_layers():
    assert upward_imports(GRAPH) == []


def test_protocol_code_knows_only_the_host_interface():
    for name, targets in GRAPH.items():
        if name.startswith(("daphne.protocols", "daphne.websocket", "daphne.http")):
            hosts = {t for t in targets if t.startswith("daphne.hosts")}
            assert hosts <= {"daphne.hosts"}, (name, hosts)


def test_the_checks_catch_a_cycle_and_an_upward_import():
    """The checks above can fail: a made-up graph with both faults."""
    graph = {
        "daphne.http.exchange": {"daphne.protocols.http1"},
        "daphne.protocols.http1": {"daphne.http.exchange"},
        "daphne.hosts.app": {"daphne.websocket.session"},
    }
    assert cycles(graph) == [["daphne.http.exchange", "daphne.protocols.http1"]]
    assert upward_imports(graph) == [
        "daphne.http.exchange (layer 1) imports daphne.protocols.http1 (layer 3)",
        "daphne.hosts.app (layer 2) imports daphne.websocket.session (layer 2)",
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_has_a_docstring(name):
    tree = ast.parse(MODULES[name].read_text())
    if not tree.body:
        return  # an empty package marker
    assert ast.get_docstring(tree), f"{name} needs a docstring saying what it is for"


def test_no_class_is_over_400_lines():
    large = []
    for path in MODULES.values():
        relative = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            size = node.end_lineno - node.lineno + 1
            if size > MAX_CLASS_LINES and (relative, node.name) not in (
                LARGE_CLASSES_ALLOWED
            ):
                large.append(f"{relative}: {node.name} is {size} lines")
    assert large == []


#: The modules that may import Django (Django is optional: ``import daphne``,
#: the server and the command line never need it).
DJANGO_APP = ("daphne.apps", "daphne.checks", "daphne.management")


def imports_django(name: str) -> bool:
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            targets = [node.module or ""]
        else:
            continue
        if any(target.split(".")[0] == "django" for target in targets):
            return True
    return False


def test_only_the_django_app_imports_django():
    importers = {name for name in MODULES if imports_django(name)}
    assert importers, "the check cannot see Django imports"
    outside = {
        name
        for name in importers
        if not any(name == m or name.startswith(m + ".") for m in DJANGO_APP)
    }
    assert outside == set()

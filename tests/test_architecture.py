"""docs/architecture.md is true: every rule it states is checked here, on the package's source."""
import ast
import re

import pytest

from asteroid_frugal.config import load_config
from asteroid_frugal.data import types

from conftest import REPO

PACKAGE = REPO / "asteroid_frugal"
PAGE = (REPO / "docs" / "architecture.md").read_text()


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def trees():
    return {name: ast.parse(path.read_text()) for name, path in modules().items()}


def import_graph():
    """Every import between the package's modules, including those inside functions."""
    graph = {}
    for name, tree in trees().items():
        is_package = modules()[name].name == "__init__.py"
        package = name if is_package else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[:len(base) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                deps.add(module)
                deps |= {f"{module}.{a.name}" for a in node.names}   # "from . import slakh"
        graph[name] = {d for d in deps if d.startswith("asteroid_frugal") and d != name}
    return {m: {d for d in deps if d in graph} for m, deps in graph.items()}


def page_layers():
    """``{module: layer number}`` from the page's layer table (``cli/*``: every module of a folder)."""
    section = PAGE.split("## Layers", 1)[1].split("\n## ", 1)[0]
    names = modules()
    layers = {}
    for row in re.findall(r"^\| (\d+) [^|]*\|([^|]+)\|", section, flags=re.M):
        number, cell = int(row[0]), row[1]
        for entry in re.findall(r"`([^`]+)`", cell):
            dotted = "asteroid_frugal." + entry.replace("/", ".").removesuffix(".py")
            if dotted.endswith(".*"):
                found = [m for m in names if m.startswith(dotted[:-1])]
            else:
                found = [dotted] if dotted in names else []
            assert found, f"docs/architecture.md names `{entry}`, which is not a module of the package"
            for m in found:
                assert m not in layers, f"{m} is in two layers of the page"
                layers[m] = number
    return layers


def test_every_module_is_in_the_layer_table():
    """(a package's ``__init__`` aside: the root one registers the model, the others hold a docstring)"""
    assert all(not (path.name == "__init__.py" and module_name(path) != "asteroid_frugal" and ast.parse(
        path.read_text()).body[1:]) for path in modules().values())
    layers = page_layers()
    missing = sorted(m for m, path in modules().items() if m not in layers and path.name != "__init__.py")
    assert missing == []


def test_a_lower_module_never_imports_a_higher_one():
    layers, graph = page_layers(), import_graph()
    upward = sorted(f"{m} (layer {layers[m]}) imports {d} (layer {layers[d]})"
                    for m, deps in graph.items() if m in layers for d in deps if d in layers and layers[d] > layers[m])
    assert upward == []


def test_no_import_cycles():
    graph = import_graph()
    assert "asteroid_frugal.midi_render" in graph["asteroid_frugal.data.extra"]   # the graph sees real imports
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if dep in ("asteroid_frugal", "asteroid_frugal.data"):
                continue      # the packages' __init__ (registration) is imported by everything
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_argparse_only_in_the_command_line_layer():
    users = sorted(name for name, tree in trees().items() if not name.startswith("asteroid_frugal.cli")
                   for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   and "argparse" in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]))
    assert users == []
    assert not any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
                   for name, tree in trees().items() if not name.startswith("asteroid_frugal.cli")
                   for node in tree.body)


def test_every_command_runs_as_python_dash_m_and_has_a_stage_script_or_console_script():
    commands = sorted(m.rsplit(".", 1)[1] for m in modules() if m.startswith("asteroid_frugal.cli.")
                      and m != "asteroid_frugal.cli.common")
    pyproject = (REPO / "pyproject.toml").read_text()
    for command in commands:
        tree = ast.parse(modules()[f"asteroid_frugal.cli.{command}"].read_text())
        assert {"main", "cli"} <= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, command
        assert any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body), command
        script = REPO / "local" / f"{command}.py"
        console = f'"asteroid_frugal.cli.{command}:cli"' in pyproject
        assert console or f"from asteroid_frugal.cli.{command} import cli" in script.read_text(), command


def test_no_private_names_across_modules():
    found = []
    names = modules()
    for name, tree in trees().items():
        imported_modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("asteroid_frugal")):
                found += [f"{name}: from {node.module} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
                imported_modules |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                imported_modules |= {a.asname or a.name for a in node.names if a.name in names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported_modules
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    assert found == []


def test_every_module_has_its_test_file():
    """tests/test_<module>.py mirrors the package; a command is tested in its own file or through
    its ``main`` in the tests of the step it runs (the page's rule)."""
    tests = {p.name: p.read_text() for p in (REPO / "tests").glob("test_*.py")}
    missing = []
    for name, path in modules().items():
        if path.name == "__init__.py":
            continue
        dotted = name.removeprefix("asteroid_frugal.")
        if f"test_{dotted.replace('.', '_')}.py" in tests:
            continue
        command = dotted.removeprefix("cli.")
        if dotted.startswith("cli.") and any(f"asteroid_frugal.cli.{command} import" in text
                                            or f"from asteroid_frugal.cli import {command}" in text
                                            for text in tests.values()):
            continue
        missing.append(dotted)
    assert missing == []
    assert "tests/test_<module>.py" in PAGE.split("## Rules", 1)[1]


def _docstrings(tree):
    return {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def test_names_are_spelled_in_data_types_only():
    names = {*types.SOURCES, *types.TARGETS, *types.REST_NAMES.values(), types.ACCOMPANIMENT, types.MIXTURE}
    found = []
    for name, tree in trees().items():
        if name == "asteroid_frugal.data.types":
            continue
        docs = _docstrings(tree)
        found += [f"{name}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in names and id(n) not in docs]
    assert found == []


def _page_default_exceptions():
    section = PAGE.split("### Defaults", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"`(\w+(?:\.\w+)+)\((\w+)=([^)`]+)\)`", section))


def test_defaults_live_in_conf_yml_only():
    """No library parameter named after a conf key defaults to that key's value (the page lists
    the exceptions, with their reasons); no DEFAULT_* constant but DEFAULT_CONF; a command-line
    flag defaults to None (the shortcut then falls back to the config)."""
    values = {}
    for section in load_config().values():
        for key, value in section.items():
            values.setdefault(key, []).append(value)
    repeated, constants, flags = set(), [], []
    for name, tree in trees().items():
        short = name.removeprefix("asteroid_frugal.")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                positional = a.posonlyargs + a.args
                pairs = [*zip(positional[len(positional) - len(a.defaults):], a.defaults),
                         *[(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]]
                owner = next((c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and node in c.body), None)
                where = f"{short}.{owner + '.' if owner else ''}{node.name}"
                repeated |= {(where, arg.arg, repr(d.value)) for arg, d in pairs
                             if isinstance(d, ast.Constant) and d.value is not None
                             and any(v == d.value and type(v) is type(d.value) for v in values.get(arg.arg, []))}
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.startswith("DEFAULT")
                                                    and t.id != "DEFAULT_CONF" for t in node.targets):
                constants.append(f"{short}:{node.lineno}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags += [f"{short}:{node.lineno}" for kw in node.keywords if kw.arg == "default"
                          and not (isinstance(kw.value, ast.Constant) and kw.value.value in (None, False))
                          and name != "asteroid_frugal.cli.common"]
    page = {(f, p, v.replace('"', "'")) for f, p, v in _page_default_exceptions()}
    assert {(f, p, v.replace('"', "'")) for f, p, v in repeated} == page
    assert constants == [] and flags == []


@pytest.mark.parametrize("rule", ["argparse", "lower", "private", "data/types.py", "conf.yml", "layer"])
def test_the_page_states_each_checked_rule(rule):
    assert rule in PAGE.split("## Rules", 1)[1]

"""The package's shape (docs/architecture.md): no import cycles, the library never imports a CLI module."""
import ast

from conftest import REPO

PACKAGE = REPO / "asteroid_frugal"
CLI_MODULES = {"asteroid_frugal.separate", "asteroid_frugal.sweep"}   # file/experiment command lines only


def _module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """Every import between the package's modules, including those inside functions."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
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


def test_no_import_cycles():
    graph = import_graph()
    assert "asteroid_frugal.data.extra" in graph and "asteroid_frugal.midi_render" in graph["asteroid_frugal.data.extra"]
    state, cycles = {}, []

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if dep == "asteroid_frugal" or dep.startswith("asteroid_frugal.__"):
                continue      # the package's __init__ (registration) is imported by everything
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_library_modules_do_not_import_command_line_modules():
    graph = import_graph()
    users = {m: sorted(graph[m] & CLI_MODULES) for m in graph if m not in CLI_MODULES and graph[m] & CLI_MODULES}
    assert users == {}

"""The documentation points at things that exist: every ``python -m`` module it shows runs as a
command, every ``local/`` script and console script it names is there, every relative link
resolves, and the project's pages speak of the project only."""
import ast
import re
import subprocess
import sys

import pytest

from conftest import REPO

PAGES = sorted([REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("egs/**/README.md"),
                REPO / "benchmarks" / "README.md"])


def _text(page):
    return page.read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_commands_and_links_of_a_page_exist(page):
    text = _text(page)
    for module in re.findall(r"python -m (asteroid_frugal(?:\.\w+)*)(?![.\w])", text):
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{page.name}: python -m {module}: no such module"
        assert "__main__" in path.read_text(), f"{page.name}: python -m {module} does not run as a command"
    for script in re.findall(r"\blocal/(\w+\.py)\b", text):
        assert (REPO / "local" / script).is_file(), f"{page.name}: local/{script} does not exist"
    scripts = re.findall(r'^(asteroid-frugal-[\w-]+) =', (REPO / "pyproject.toml").read_text(), flags=re.M)
    for name in set(re.findall(r"\b(asteroid-frugal-[a-z-]+)\b", text)):
        assert name in scripts, f"{page.name}: {name} is not a console script of pyproject.toml"
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):
        assert (page.parent / target).exists(), f"{page.name}: link to {target} does not resolve"


def test_readme_is_a_newcomers_page_with_its_two_commands():
    text = _text(REPO / "README.md")
    assert len(text.splitlines()) <= 150
    block = text.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["./run.sh", "./test.sh"]
    assert "./test.sh" in (REPO / ".ci" / "run").read_text()


# the words of a work log (spelled in pieces so that this file does not match itself)
WORK_LOG = re.compile("|".join(["this " + "session", "today" + "'s", r"\bissue" + r" \d+", r"\(" + "issue\\b"]), re.I)


def test_the_project_speaks_of_itself_only():
    """No work-log wording in the project's pages, code or comments."""
    files = subprocess.run(["git", "ls-files", "*.md", "*.py", "*.sh", "*.yml"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    found = [f"{name}:{i}" for name in files if not name.startswith("tests/test_docs.py")
             for i, line in enumerate((REPO / name).read_text().splitlines(), 1)
             if WORK_LOG.search(line)]
    assert found == []


def test_every_command_module_prints_its_help():
    commands = sorted(p.stem for p in (REPO / "asteroid_frugal" / "cli").glob("*.py")
                      if p.stem not in ("__init__", "common"))
    code = ("import importlib, sys\n"
            f"for c in {commands!r}:\n"
            "    parser = importlib.import_module('asteroid_frugal.cli.' + c).build_parser()\n"
            "    assert parser.format_help(), c\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for c in commands:
        tree = ast.parse((REPO / "asteroid_frugal" / "cli" / f"{c}.py").read_text())
        assert "build_parser" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, c

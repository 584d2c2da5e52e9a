"""The package's layout rules (docs/design.md, Contributing), checked by parsing src/biounet with ast.

- no import cycle between modules (imports inside functions count too);
- no ``from .x import _name``: a private name stays in its module;
- no module over 400 lines, no function over 80 lines (exceptions below, each with its reason);
- every module has a test file named after it (tests/test_data_readers.py for data/readers.py).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "biounet"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80
# (module, function): reason. None at present.
LONG_FUNCTIONS: dict[tuple[str, str], str] = {}
LONG_MODULES: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import of a biounet module in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if target in modules:
                # `from . import engine`: the names may be modules themselves
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                found += [(s, []) for s in subs]
                found.append((target, [n for n in names if f"{target}.{n}" not in modules]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in modules]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # importing a package's module runs the package's __init__ too, but that edge only
        # matters when the __init__ imports back: it is listed like any other import
        graph[name] = {t for t, _ in _imports(name, path, modules) if t != name}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # a package's __init__ importing its own submodules (biounet.data, biounet.cli) is not a cycle
    # unless a submodule imports the package back through its __init__
    real = [c for c in cycles if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, f"import cycles: {[' -> '.join(c) for c in real]}"


def test_no_private_name_crosses_modules():
    modules = _modules()
    bad = [
        f"{name}: from {target} import {n}"
        for name, path in modules.items()
        for target, names in _imports(name, path, modules)
        if target != name
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, bad


def test_module_and_function_sizes():
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            too_long.append(f"module {name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (name, node.name) not in LONG_FUNCTIONS:
                    too_long.append(f"function {name}.{node.name}: {length} lines")
    assert not too_long, too_long


# Modules whose tests live elsewhere, with where and why.
TESTED_ELSEWHERE = {
    "biounet.cli": "the command line package: tests/test_cli.py (parsing, help) and tests/test_errors.py "
    "(every bad input through main(argv)); its command modules are thin glue over the library",
    "biounet.errors": "tests/test_errors.py, the cross-cutting file of bad inputs (named after it)",
    "biounet.data": "the package's __init__ only re-exports its modules, each tested in tests/test_data_*.py",
}


def test_every_module_has_a_test_file_named_after_it():
    tests = PACKAGE.parent.parent / "tests"
    missing = []
    for name in _modules():
        if name == "biounet" or name.endswith("__main__") or name.startswith("biounet.cli"):
            continue
        if name in TESTED_ELSEWHERE:
            continue
        expected = tests / ("test_" + name.removeprefix("biounet.").replace(".", "_") + ".py")
        if not expected.is_file():
            missing.append(f"{name}: {expected.name}")
    assert not missing, missing
    assert (tests / "test_cli.py").is_file() and (tests / "test_errors.py").is_file()

"""The package's layout rules (docs/design.md, Contributing), checked by parsing src/biounet with ast.

- no import cycle between modules (imports inside functions count too);
- no ``from .x import _name``: a private name stays in its module;
- no module over 400 lines, no function over 60 lines (exceptions below, each with its reason);
- the subpackages are floors: a module imports only from its own floor or the floors below (FLOORS);
- at most a dozen or so names at the top of src/biounet;
- every module has a test file that mirrors its path (tests/train/test_engine.py for train/engine.py).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "biounet"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
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


# The floors, lowest first: a module may import from its own floor and the ones below, never above
# (docs/design.md draws them). A floor is a subpackage, or a top-level module (models, __main__).
FLOORS = (
    ("core",),  # errors, the one TrainConfig, device and precision, free memory
    ("io",),  # files: atomic writes, image metadata, volumes, OME-Zarr stores
    ("data",),  # training data: readers, split, augmentation, tiles, the ISBI download
    ("model",),  # the U-Net, its geometry, checkpoints, the built-in weights
    ("instances",),  # cells from boundary maps (no torch)
    ("segment",),  # overlap-tile inference, predict's files, block-wise volumes, Dask
    ("evaluation",),  # metrics, the challenge's measures, scoring, parameter selection
    ("deploy",),  # ONNX, torch.export, bioimage.io packages
    ("models",),  # open any model by what the user typed
    ("train",),  # the training engine and cross-validation
    ("bench", "integrations"),  # biounet bench; the napari plugin
    ("cli", "__main__"),  # the command line
)
MAX_TOP_LEVEL_NAMES = 16  # __init__.py, __main__.py, py.typed, models.py and a dozen subpackages


def _floor(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for level, names in enumerate(FLOORS):
        if part in names:
            return level
    return -1 if module == "biounet" else len(FLOORS)  # the package root (__version__) is below all


def test_every_module_is_on_a_floor():
    unplaced = [m for m in _modules() if _floor(m) == len(FLOORS)]
    assert not unplaced, unplaced


def test_imports_only_go_down_the_floors():
    up = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets if _floor(b) > _floor(a)]
    assert not up, up


def test_few_names_at_the_top():
    names = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert len(names) <= MAX_TOP_LEVEL_NAMES, names


TESTS = PACKAGE.parent.parent / "tests"


def _expected_test(name: str) -> Path:
    """tests/a/b/test_c.py for biounet.a.b.c; a package's __init__ is tested like a module of its parent."""
    parts = name.split(".")[1:]
    return TESTS.joinpath(*parts[:-1]) / f"test_{parts[-1]}.py"


def _only_names(path: Path) -> bool:
    """Whether a package's __init__ only names what the rest may use (imports, __all__, docstring)."""
    return not any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.parse(path.read_text()).body)


def test_every_module_has_a_test_file_that_mirrors_it():
    missing = []
    for name, path in _modules().items():
        if name == "biounet" or name.endswith("__main__"):
            continue
        if path.name == "__init__.py" and _only_names(path):
            continue
        expected = _expected_test(name)
        if not expected.is_file():
            missing.append(f"{name}: {expected.relative_to(TESTS)}")
    assert not missing, missing

"""The documentation cannot drift from the code: docs/cli.md is the parser's own help, and every
`biounet` command in the README parses and, where it can run offline on tiny inputs, runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import TINY_NET, load_script

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_up_to_date():
    expected = load_script("docs/gen_cli.py").render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md differs from the parser's help: run `python docs/gen_cli.py`"


# --- the README's commands ------------------------------------------------------------------

README = ROOT / "README.md"
# Appended to every training line (train, cv, demo) so that it runs in seconds; argparse lets a
# flag given later on the line win. --no-compile: configs/isbi-cpu.yaml compiles, which on the
# CPU needs a C++ compiler and a minute; --no-val-tta: cv scores with TTA when the recipe does.
TINY_TRAIN = [
    "--steps",
    "2",
    *TINY_NET,
    "--batch-size",
    "2",
    "--no-validation",
    "--progress",
    "off",
    "--no-compile",
    "--no-val-tta",
    "--workers",
    "0",
]
# A resumed run keeps its own settings (it refuses --base-width and the like): only its length.
TINY_RESUME = ["--steps", "3", "--progress", "off"]


PREFIXES = (
    "biounet ",
    ".venv/bin/biounet ",
    "python -m biounet",
    "python3 -m biounet",
    ".venv/bin/python -m biounet",
    "torchrun ",
)


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """(line, argv after `biounet`) for every command of the README's fenced code blocks that runs
    biounet: `biounet ...`, `.venv/bin/biounet ...`, `python -m biounet ...`, `torchrun ... -m
    biounet ...`. Continuation lines (ending in a backslash) are joined; shell comments dropped."""
    import shlex

    commands, fenced, pending = [], False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            fenced, pending = not fenced, ""
            continue
        if not fenced:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line.startswith(PREFIXES):
            continue  # not a command that runs biounet (Python, make, a folder listing)
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] in ("biounet", ".venv/bin/biounet"):
            commands.append((line, words[1:]))
        elif words[0] in ("python", "python3", ".venv/bin/python") and words[1:3] == ["-m", "biounet"]:
            commands.append((line, words[3:]))
        elif words[0] == "torchrun":
            at = words.index("-m")
            assert words[at + 1] == "biounet", line
            commands.append((line, words[at + 2 :]))
    return commands


def test_readme_commands_parse():
    """Every biounet command of the README is one the parser accepts (no placeholder notation)."""
    from biounet.cli import build_parser

    commands = readme_commands(README.read_text(encoding="utf-8"))
    seen = {argv[0] for _, argv in commands}
    assert {"fetch", "train", "evaluate", "predict", "score", "export", "cv"} <= seen, seen
    assert any(line.startswith("torchrun") for line, _ in commands)
    for line, argv in commands:
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"the README's command does not parse: {line}") from exc


def test_record_commands_parse():
    """The commands quoted in the measurement record and the developer pages parse as well (they
    are not run: they train for minutes to hours)."""
    from biounet.cli import build_parser

    for name in ("accuracy.md", "performance.md", "training.md", "design.md", "finetune.md"):
        commands = readme_commands((ROOT / "docs" / name).read_text(encoding="utf-8"))
        for line, argv in commands:
            try:
                build_parser().parse_args(argv)
            except SystemExit as exc:
                raise AssertionError(f"docs/{name}: the command does not parse: {line}") from exc


def _write_own_images(folder: Path, isbi_dir: Path, n: int = 6, side: int = 96) -> None:
    """A folder of image/mask PNG pairs, as the README tells a user to lay out their own data:
    crops of the ISBI slices, with a few anti-aliased mask values (for --mask-threshold)."""
    import tifffile
    from PIL import Image

    images = tifffile.imread(isbi_dir / "train-volume.tif")
    labels = tifffile.imread(isbi_dir / "train-labels.tif")
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(n):
        mask = labels[i, :side, :side].copy()
        mask[0, :4] = 128  # a soft edge: refused without --mask-threshold, cell above it
        Image.fromarray(images[i, :side, :side]).save(folder / "images" / f"s{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"s{i}.png")


def _write_miniature_isbi(folder: Path, isbi_dir: Path, n: int = 20, side: int = 64) -> None:
    """The ISBI 2012 folder in miniature: the first n slices of each stack cropped to side x side
    (20 slices keep fold 1's held-out slices 4, 6, 7, 9, 18, 19, which the README scores)."""
    import tifffile

    folder.mkdir(parents=True)
    for name in ("train-volume.tif", "train-labels.tif", "test-volume.tif"):
        stack = tifffile.imread(isbi_dir / name)
        part = stack[: (n if name.startswith("train") else 3), :side, :side]
        tifffile.imwrite(folder / name, part, photometric="minisblack")  # pages, as the real stacks


def _run_readme_commands(tmp_path: Path, monkeypatch, capsys, isbi: Path) -> list[str]:
    """The README's commands, in its order, run for real in a scratch folder whose data/isbi2012
    is ``isbi`` (a symlink): train (made tiny), evaluate, predict, resume, train on an images/ +
    masks/ folder, fine-tune, cv, predict, score, export, predict and evaluate with the exported
    model; each finds what the lines before it made.

    Not run, only parsed (test_readme_commands_parse): `fetch` needs the network (the data is
    linked in instead), and the `torchrun` lines start several processes or machines
    (tests/test_distributed.py runs torchrun itself)."""
    from biounet.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "isbi2012").symlink_to(isbi)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    _write_own_images(tmp_path / "my-data", isbi)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIOUNET_CPU_BF16", "0")  # float32 on any CPU: the fastest where bf16 is emulated

    ran = []
    for line, argv in readme_commands(README.read_text(encoding="utf-8")):
        if argv[0] == "fetch" or line.startswith("torchrun"):
            continue  # parsed only: see the docstring
        if argv[0] in ("train", "cv", "demo"):
            argv = argv + (TINY_RESUME if "--resume" in argv else TINY_TRAIN)
        rc = main(argv)
        out = capsys.readouterr()
        assert rc == 0, f"the README's command failed ({rc}): {line}\n{out.out[-2000:]}\n{out.err[-2000:]}"
        ran.append(argv[0])
    assert {"train", "cv", "evaluate", "predict", "score", "export"} <= set(ran), ran
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.pt2").is_file()
    assert (tmp_path / "runs" / "cpu-f1" / "eval.json").is_file()
    assert (tmp_path / "eval-onnx.json").is_file()
    assert list((tmp_path / "runs" / "mine" / "predictions").glob("*_membrane.tif"))
    return ran


def test_readme_commands_run_on_miniature_data(tmp_path, monkeypatch, capsys, isbi_dir):
    """Every runnable README command, on a miniature ISBI folder (20 slices of 64x64)."""
    mini = tmp_path / "isbi2012-mini"
    _write_miniature_isbi(mini, isbi_dir)
    (tmp_path / "work").mkdir()
    _run_readme_commands(tmp_path / "work", monkeypatch, capsys, mini)


@pytest.mark.slow
def test_readme_commands_run_on_isbi(tmp_path, monkeypatch, capsys, isbi_dir):
    """The same on the real ISBI 2012 stacks (30 slices of 512x512): minutes on 2 CPU cores."""
    _run_readme_commands(tmp_path, monkeypatch, capsys, isbi_dir)


# --- links ----------------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to hyphens."""
    import re

    out, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_local_links_resolve():
    """Every link from the README or docs/ to a local file (and heading) points at something."""
    import re

    broken = []
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_python_examples_import_what_they_name():
    """Every `from biounet... import ...` line in the docs' Python examples names something that exists
    (modules move; an example that no longer imports is the first thing a newcomer hits)."""
    import ast
    import importlib
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in pages:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            for node in ast.walk(ast.parse(block)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("biounet"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{page.name}: {node.module} has no {alias.name}"
                        checked += 1
    assert checked >= 8  # the design page's API example alone imports this many

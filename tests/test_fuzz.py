"""tests/support/fuzzing.py with a small, derandomized budget: damaged images through the readers, broken
configs through load_yaml/from_dict/validate, nonsense command lines through ``main(argv)``, damaged
volume stores through open_volume, --roi texts through parse_roi and predict's volume options.
Every input ends in a valid result or a clean one-line error; the long run is the benchmark's.

No input is left out: one that ends in a known finding (``fuzz.KNOWN_FINDINGS``: bugs the fuzzer found,
reported, not fixed yet) fails these tests like any other failure. Each known finding has a small
deterministic reproducer below, marked ``xfail(strict=True)`` with the finding: an expected failure
while the bug is open, a failure of the suite (XPASS) once it is fixed, until its entry and the mark go."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ROOT
from support import fuzzing as fuzz

FAST = settings(
    deadline=None,
    derandomize=True,
    max_examples=60,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
SLOW = settings(FAST, max_examples=20)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return fuzz.Workspace.create(tmp_path_factory.mktemp("fuzz") / "ws")


def _fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@FAST
@given(
    image=fuzz.image_files(),
    in_channels=st.sampled_from((1, 3)),
    classes=st.sampled_from((2, 3)),
    threshold=st.sampled_from((None, 127.0)),
)
def test_readers_return_an_array_or_a_data_error(tmp_path, image, in_channels, classes, threshold):
    suffix, data, _ = image
    path = _fresh(tmp_path / "case") / f"x{suffix}"
    path.write_bytes(data)
    outcome = fuzz.check_readers(path, in_channels, classes, threshold, limit=30)
    assert outcome.status in ("ok", "clean"), outcome.detail


@FAST
@given(text=fuzz.yaml_texts())
def test_configs_load_or_raise_one_config_error(tmp_path, text):
    outcome = fuzz.check_config(text, tmp_path / "c.yaml", limit=30)
    assert outcome.status in ("ok", "clean"), outcome.detail


@SLOW
@given(data=st.data())
@pytest.mark.parametrize("command", ["predict", "evaluate", "score", "fetch", "bench", "export"])
def test_command_lines_end_in_success_or_one_clean_line(ws, tmp_path, command, data):
    case = _fresh(tmp_path / "case")
    fuzz.write_files(case, data.draw(fuzz.fuzz_files()), ws, data.draw(st.none() | fuzz.checkpoint_damage))
    argv = data.draw(fuzz.argvs(ws, case, command))
    outcome = fuzz.check_cli(argv, limit=30)
    assert outcome.status in ("ok", "clean"), (argv, outcome.detail, outcome.stderr)


@settings(SLOW, max_examples=8)
@given(data=st.data())
@pytest.mark.parametrize("command", ["train", "cv", "demo"])
def test_training_command_lines_end_in_success_or_one_clean_line(ws, tmp_path, command, data):
    case = _fresh(tmp_path / "case")
    fuzz.write_files(case, data.draw(fuzz.fuzz_files()), ws)
    argv = data.draw(fuzz.argvs(ws, case, command))
    outcome = fuzz.check_cli(argv, limit=30)
    assert outcome.status in ("ok", "clean"), (argv, outcome.detail, outcome.stderr)


@FAST
@given(case=fuzz.volume_cases())
def test_damaged_volumes_read_or_raise_one_biounet_error(tmp_path, case):
    spec, expect = fuzz.write_volume(case, _fresh(tmp_path / "case"))
    outcome = fuzz.check_volume(spec, case["level"], case["axes"], expect, limit=30)
    assert outcome.status in ("ok", "clean"), (case, outcome.detail)


@FAST
@given(roi=fuzz.roi_inputs())
def test_roi_texts_give_three_ranges_or_one_config_error(roi):
    text, shape, valid = roi
    outcome = fuzz.check_roi(text, shape, valid)
    assert outcome.status in ("ok", "clean"), (text[:100], shape, valid, outcome.detail)


@settings(SLOW, max_examples=30)
@given(data=st.data())
def test_volume_predict_command_lines_end_in_a_store_or_one_clean_line(ws, tmp_path, data):
    case = _fresh(tmp_path / "case")
    runs, damage = data.draw(fuzz.volume_runs(ws, case))
    outcome = fuzz.check_volume_runs(runs, damage, limit=30)
    assert outcome.status in ("ok", "clean"), (runs, damage[0], outcome.detail, outcome.stderr)


def test_the_volume_checks_tell_failures_from_clean_errors(ws, tmp_path):
    import numpy as np
    import zarr

    assert fuzz.check_volume(ws.volume).status == "ok"
    assert fuzz.check_volume(str(tmp_path / "missing.zarr")).status == "clean"
    pixels = np.arange(24, dtype=np.uint8).reshape(1, 4, 6)
    zarr.create_array(str(tmp_path / "v.zarr"), data=pixels)
    assert fuzz.check_volume(str(tmp_path / "v.zarr"), expect=pixels).status == "ok"
    assert fuzz.check_volume(str(tmp_path / "v.zarr"), expect=pixels + 1).status == "failure"  # other pixels
    assert fuzz.check_roi("0:1,2:3,4:5", (2, 4, 6), valid=True).status == "ok"
    assert fuzz.check_roi("1:0,2:3,4:5", (2, 4, 6), valid=False).status == "clean"
    assert fuzz.check_roi("0:2,0:4,0:6", (2, 4, 6), valid=False).status == "failure"  # accepted, said invalid
    roi = fuzz.check_roi("0:1,0:2,0:" + "9" * 4400, (2, 4, 6))  # finding R1 (fixed): int() refuses 4400 digits
    assert roi.status == "clean", roi.detail
    argv = ["predict", ws.volume, "--model", str(ws.run), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert fuzz.check_volume_cli([*argv, "--roi", "0:1,3:30,5:45", "--dtype", "float32"]).status == "ok"
    assert fuzz.check_volume_cli([*argv, "--roi", "0:1,3:30,5:45", "--dtype", "uint8"]).status == "clean"  # refused
    argv[argv.index("--out") + 1] = str(tmp_path / "out2")
    again = fuzz.check_volume_runs([[*argv, "--labels"]] * 2, ("interrupt", 0, b""))  # resumed
    assert again.status == "ok", again.detail


def test_the_checker_tells_failures_from_clean_errors(ws, tmp_path, monkeypatch):
    assert fuzz.check_cli(["predict"]).status == "clean"  # argparse: one line, exit 2
    assert fuzz.check_cli(["score", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]).status == "clean"
    import biounet.cli

    monkeypatch.setitem(biounet.cli.COMMANDS, "score", lambda args: 1 / 0)
    outcome = fuzz.check_cli(["score", "a", "b"])
    assert outcome.status == "failure" and "ZeroDivisionError" in outcome.detail
    monkeypatch.setitem(biounet.cli.COMMANDS, "score", lambda args: __import__("time").sleep(5))
    assert fuzz.check_cli(["score", "a", "b"], limit=0.2).status == "hang"


def test_patched_headers_declare_huge_images(tmp_path):
    import numpy as np
    import tifffile
    from PIL import Image

    png = tmp_path / "x.png"
    png.write_bytes(fuzz.encode_png(np.zeros((4, 5), np.uint8), declared=(fuzz.HUGE, fuzz.HUGE)))
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(png) as img:
            assert img.size == (fuzz.HUGE, fuzz.HUGE)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    tif = tmp_path / "x.tif"
    tif.write_bytes(fuzz.patch_tiff_size(fuzz.encode_tiff(np.zeros((4, 5), np.uint8), shaped=False)))
    with tifffile.TiffFile(tif) as t:
        assert t.pages[0].shape == (fuzz.HUGE, fuzz.HUGE)


# ------------------------------------------------------------------------------------ known findings

FINDINGS = {f.id: f for f in fuzz.KNOWN_FINDINGS}


def reproduces_finding(finding_id: str):
    """The mark of a known finding's reproducer: xfail, strict, for an AssertionError only (anything else
    the reproducer raises, say a different failure, fails the test)."""
    finding = FINDINGS.get(finding_id)
    reason = (
        f"known finding {finding_id}: {finding.summary}"
        if finding
        else f"known finding {finding_id}: no longer in fuzz.KNOWN_FINDINGS; remove this reproducer's xfail"
    )
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


# check_readers in a subprocess whose address space is capped at what it uses after its imports plus
# CAP_GIB (the long run's --max-memory-gib, made independent of the machine): an input that allocates
# without bound ends there in a MemoryError instead of taking the machine's memory
_CAPPED_READERS = """
import json, resource, sys
from pathlib import Path
from support import fuzzing as fuzz
import biounet.data.readers  # imported before the cap
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
cap = vm + int(float(sys.argv[2]) * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
outcome = fuzz.check_readers(Path(sys.argv[1]), limit=60)
print(json.dumps({"status": outcome.status, "known": fuzz.known_finding(outcome), "detail": outcome.detail}))
"""


def check_readers_capped(path, cap_gib: float = 1.0) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    }
    run = subprocess.run(
        [sys.executable, "-c", _CAPPED_READERS, str(path), str(cap_gib)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if run.returncode != 0 or not run.stdout.strip():
        raise RuntimeError(f"the capped check did not run (exit status {run.returncode}): {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def tall_bilevel_tiff(rows: int, rows_per_strip: int) -> bytes:
    """A 1-bit TIFF, 1 pixel wide, whose header declares ``rows`` rows in strips of ``rows_per_strip``
    rows: ceil(rows / rows_per_strip) strips, of which it holds one (the 4 x 1 image written)."""
    tiff = fuzz.encode_tiff(np.zeros((4, 1), bool), shaped=False)
    return fuzz.patch_tiff_tags(tiff, {257: rows, 278: rows_per_strip})


def test_the_capped_reader_check_reads_a_small_bilevel_tiff(tmp_path):
    """The reproducer's harness on the same file undamaged: ok, so I1's failure below is the header's."""
    path = tmp_path / "x.tif"
    path.write_bytes(tall_bilevel_tiff(4, 4))
    assert check_readers_capped(path)["status"] == "ok"


def test_I1_a_tiff_declaring_more_strips_than_it_holds_is_a_data_error(tmp_path):
    """2**27 rows in one-row strips: 640 MiB of pixels and their float32 copy, which the memory check of
    read_image_file allows on any machine that runs this suite; the tuple of 2**27 strip indices alone
    is 1 GiB, over the 1 GiB the capped subprocess may add."""
    path = tmp_path / "i1.tif"
    path.write_bytes(tall_bilevel_tiff(2**27, 1))
    outcome = check_readers_capped(path, cap_gib=1.0)
    assert outcome["status"] == "clean", outcome["detail"][-2000:]  # a one-line DataError, found I1 (fixed)


def test_every_known_finding_has_a_strict_xfail_reproducer():
    marked = {}
    for name, test in globals().items():
        for mark in getattr(test, "pytestmark", []) if name.startswith("test_") else []:
            reason = mark.kwargs.get("reason", "")
            if mark.name == "xfail" and reason.startswith("known finding "):
                marked[reason.removeprefix("known finding ").split(":", 1)[0]] = mark.kwargs.get("strict")
    assert set(marked) == set(FINDINGS), "each known finding needs one reproducer here, and each reproducer a finding"
    assert all(marked.values()), "the reproducers' xfail marks must be strict"

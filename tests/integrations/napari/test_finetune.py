"""The "Fine-tune biounet" widget in a real napari viewer (Qt on the virtual screen pytest-xvfb starts), with
the tiny network as the base model on a small synthetic image painted in a Labels layer: the run, its preview
and its folder, the new model in the Segment widget at once, Cancel, and bad input answered in napari's
notification area without starting a run."""

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from support import tiny_run

from biounet.data import synthetic_em_image
from biounet.integrations.napari import widget as widget_module
from biounet.integrations.napari.finetune import PREVIEW, FineTuneWidget
from biounet.integrations.napari.widget import MODEL_FILE, SegmentWidget
from biounet.model import checkpoint as ckpt_io
from biounet.train import engine

WAIT_MS = 120_000  # the longest a run may take here (2 CPU cores shared); pytest-timeout stops a hang


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The tiny network trained one step (width 4, depth 2, 60-pixel tiles): the base model."""
    return tiny_run(tmp_path_factory.mktemp("base") / "run")


@pytest.fixture
def viewer(make_napari_viewer, monkeypatch):
    monkeypatch.setattr(widget_module, "SESSION_MODELS", {})  # this test's session models only
    return make_napari_viewer()


@pytest.fixture
def widget(viewer, base, tmp_path):
    widget = FineTuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Fine-tune biounet")
    widget._model.value = MODEL_FILE
    widget._model_file.value = base
    widget._root.value = tmp_path / "runs"
    return widget


def paint(viewer, size=64):
    """A synthetic EM image and a Labels layer painted on two patches: 1 on membrane, 2 on cell pixels."""
    image, truth = synthetic_em_image(np.random.default_rng(3), size)
    labels = np.zeros(image.shape, np.uint8)
    for y, x in ((4, 4), (size // 2, size // 2)):
        labels[y : y + 20, x : x + 20] = np.where(truth[y : y + 20, x : x + 20] == 0, 1, 2)
    return viewer.add_image(image, name="em"), viewer.add_labels(labels, name="paint")


def start(qtbot, widget, image, labels, steps=3, every=2, wait=True):
    """Choose the layers and the length, press Start and (``wait``) wait until the worker has ended."""
    widget.reset_choices()
    widget._image.value = image
    if labels is not None:
        widget._painted.value = labels
    widget._steps.value, widget._every.value = steps, every
    widget._run.native.click()
    if wait:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def runs(tmp_path) -> list[Path]:
    folder = tmp_path / "runs"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.timeout(300)
def test_a_run_previews_saves_its_folder_and_its_model_segments_at_once(qtbot, viewer, widget, notifications, tmp_path):
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment with biounet")
    image, labels = paint(viewer)
    start(qtbot, widget, image, labels, steps=3, every=2)
    assert notifications.errors() == [], notifications.errors()
    assert widget._progress.value == widget._progress.max == 3
    (run,) = runs(tmp_path)
    assert ckpt_io.load(run)["step"] == 3 and (run / "config.yaml").is_file() and widget.outcome["step"] == 3
    np.testing.assert_array_equal(tifffile.imread(run / "labels.tif"), labels.data)
    preview = viewer.layers[PREVIEW]  # after step 2 and at the end
    assert preview.data.shape == (64, 64) and 0 < preview.data.max() <= 1 and "done" in widget._status.value
    name = f"fine-tuned {run.name}"
    assert name in segment._model.choices and name in widget._model.choices
    segment._model.value = name
    assert segment.model_ref() == str(run)
    segment.reset_choices()
    segment._image.value = image
    segment._run.native.click()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=WAIT_MS)
    assert notifications.errors() == [] and viewer.layers["em membrane"].data.shape == (64, 64)


@pytest.mark.timeout(300)
def test_cancel_stops_after_the_step_in_progress_and_saves_it(
    qtbot, viewer, widget, notifications, tmp_path, monkeypatch
):
    # step 2 runs only once Cancel was clicked: deterministic on any machine
    real_step, calls = engine.train_step, []
    second_started, cancel_clicked = threading.Event(), threading.Event()

    def gated_step(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 2:
            second_started.set()
            cancel_clicked.wait(WAIT_MS / 1000)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine, "train_step", gated_step)
    image, labels = paint(viewer)
    start(qtbot, widget, image, labels, steps=50, every=1000, wait=False)
    assert widget._cancel.enabled and not widget._run.enabled
    qtbot.waitUntil(second_started.is_set, timeout=WAIT_MS)
    widget._cancel.native.click()
    cancel_clicked.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    (run,) = runs(tmp_path)
    assert widget.outcome["stopped"] and widget.outcome["step"] == 2 and len(calls) == 2
    assert ckpt_io.load(run)["step"] == 2 and (run / "labels.tif").is_file()
    assert PREVIEW in viewer.layers and "cancelled at step 2 of 50" in widget._status.value
    assert f"fine-tuned {run.name}" in widget._model.choices and notifications.errors() == []
    assert widget._run.enabled and not widget._cancel.enabled


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "case, words",
    [
        ("other shape", "has shape (32, 64) but image layer 'em' has (64, 64)"),
        ("nothing painted", "nothing is painted in labels layer 'paint'"),
        ("unknown class", "holds label 3, but"),
        ("4D image", "4 dimensions"),
        ("no labels layer", "no labels layer"),
    ],
)
def test_bad_input_is_one_line_in_a_notification_and_starts_no_run(
    qtbot, viewer, widget, notifications, tmp_path, case, words
):
    image, labels = paint(viewer)
    if case == "other shape":
        labels = viewer.add_labels(labels.data[:32], name="half")
    elif case == "nothing painted":
        labels.data = np.zeros_like(labels.data)
    elif case == "unknown class":
        labels.data = np.where(labels.data == 2, 3, labels.data).astype(np.uint8)
    elif case == "4D image":
        image = viewer.add_image(np.zeros((2, 2, 64, 64), np.uint8), name="4d")
    elif case == "no labels layer":
        viewer.layers.remove(labels)
        labels = None
    start(qtbot, widget, image, labels)
    (message,) = notifications.errors()
    assert words in message and "Traceback" not in message and "\n" not in message
    assert runs(tmp_path) == [] and PREVIEW not in viewer.layers and widget.outcome is None


@pytest.mark.timeout(300)
def test_a_second_start_while_running_is_refused(qtbot, viewer, widget, notifications, tmp_path):
    image, labels = paint(viewer)
    start(qtbot, widget, image, labels, steps=2, every=1000, wait=False)
    widget.start()  # the Start button is disabled while a run goes; asked anyway
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    (message,) = notifications.errors()
    assert "already running" in message and len(runs(tmp_path)) == 1 and widget.outcome["step"] == 2

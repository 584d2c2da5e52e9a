"""The "Segment with biounet" widget in a real napari viewer (Qt on the virtual screen pytest-xvfb
starts), with the built-in model on small synthetic images: result layers, Cancel, and bad input
answered in napari's notification area."""

import csv
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from biounet.instances.measure import COLUMNS
from biounet.integrations.napari import widget as widget_module
from biounet.integrations.napari.sample import synthetic_stack
from biounet.integrations.napari.widget import MODEL_FILE, SegmentWidget, add_session_model

WAIT_MS = 60_000  # the longest a run may take here (2 CPU cores shared); pytest-timeout stops a hang


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment with biounet")
    return widget


def segment(qtbot, widget, layer, cells="none"):
    """Choose ``layer`` and ``cells``, press Segment and wait until the worker has ended."""
    widget.reset_choices()
    widget._image.value = layer
    widget._cells.value = cells
    widget._run.native.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


@pytest.mark.timeout(120)
def test_the_sample_is_segmented_into_membrane_and_cells_placed_like_the_image(qtbot, widget, notifications, tmp_path):
    viewer = widget.viewer
    (image,) = viewer.open_sample("biounet", "synthetic-em")
    image.scale, image.translate = (4.0, 4.0), (100.0, -8.0)
    segment(qtbot, widget, image, cells="watershed")
    assert notifications.errors() == []
    names = [layer.name for layer in viewer.layers]
    assert names == ["synthetic EM image", "synthetic EM image membrane", "synthetic EM image cells"]
    membrane, cells = viewer.layers[1], viewer.layers[2]
    assert membrane.data.shape == cells.data.shape == (256, 256)
    assert membrane.data.dtype == np.float32 and cells.data.dtype == np.uint32
    assert 0.0 <= membrane.data.min() and membrane.data.max() <= 1.0 and cells.data.max() > 10
    for layer in (membrane, cells):
        assert tuple(layer.scale) == (4.0, 4.0) and tuple(layer.translate) == (100.0, -8.0)
    # the synthetic membranes are dark: the model must call the darkest pixels membrane
    dark = image.data < np.percentile(image.data, 10)
    assert membrane.data[dark].mean() > 0.5 > membrane.data[~dark].mean()
    assert widget._progress.value == widget._progress.max == 1
    # a row of measurements per cell, found by its id under the cursor, saved as a CSV on request
    ids = np.unique(cells.data[cells.data > 0])
    assert sorted(cells.features["index"]) == ids.tolist() and set(COLUMNS) < set(cells.features.columns)
    first = cells.features.iloc[0]
    assert first["area"] == (cells.data == first["index"]).sum() and first["unit"] == "pixel"
    assert widget._save.enabled and Path(widget._csv.value) == Path.home() / "synthetic EM image_objects.csv"
    widget._csv.value = tmp_path / "cells.csv"
    widget._save.native.click()
    with open(tmp_path / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ids) and tuple(rows[0]) == COLUMNS and notifications.errors() == []
    widget._csv.value = tmp_path  # a folder: one line says so, nothing is written
    widget._save.native.click()
    (message,) = notifications.errors()
    assert "is a folder" in message


@pytest.mark.timeout(120)
def test_a_lazy_multiscale_stack_is_segmented_slice_by_slice_at_full_resolution(qtbot, widget, notifications):
    stack = synthetic_stack(slices=3, size=96)[0][0]
    levels = [da.from_array(stack, chunks=(1, 96, 96)), da.from_array(stack[:, ::2, ::2], chunks=(1, 48, 48))]
    lazy = widget.viewer.add_image(levels, multiscale=True, name="lazy", scale=(30.0, 4.0, 4.0))
    segment(qtbot, widget, lazy)
    assert notifications.errors() == []
    membrane = widget.viewer.layers["lazy membrane"]
    assert isinstance(membrane.data, np.ndarray) and membrane.data.shape == (3, 96, 96)
    assert tuple(membrane.scale) == (30.0, 4.0, 4.0)
    assert widget._progress.value == 3


@pytest.mark.timeout(120)
def test_cancel_stops_between_slices_and_adds_nothing(qtbot, widget, notifications, monkeypatch):
    from biounet.integrations.napari import stack as stack_module

    # the worker segments slice 2 only once Cancel was clicked: deterministic on any CPU or GPU
    real_segment, calls = stack_module.segment, []
    second_started, cancel_clicked = threading.Event(), threading.Event()

    def gated_segment(*args, **kwargs):
        calls.append(len(calls))
        if len(calls) == 2:
            second_started.set()
            cancel_clicked.wait(WAIT_MS / 1000)
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(stack_module, "segment", gated_segment)
    stack = synthetic_stack(slices=8, size=96)[0][0]
    layer = widget.viewer.add_image(stack, name="stack")
    widget._image.value = layer
    widget._run.native.click()
    assert widget._cancel.enabled and not widget._run.enabled
    qtbot.waitUntil(second_started.is_set, timeout=WAIT_MS)  # slice 1 done, slice 2 held
    widget._cancel.native.click()
    cancel_clicked.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    assert [layer.name for layer in widget.viewer.layers] == ["stack"]
    assert len(calls) == 2 and widget._progress.value <= 2  # stopped after the slice in progress
    assert "cancelled" in widget._status.value and notifications.errors() == []
    assert widget._run.enabled and not widget._cancel.enabled


@pytest.mark.timeout(60)
def test_an_rgb_layer_is_refused_in_a_notification_and_adds_no_layer(qtbot, widget, notifications):
    rgb = widget.viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="photo", rgb=True)
    segment(qtbot, widget, rgb)
    assert [layer.name for layer in widget.viewer.layers] == ["photo"]
    (message,) = notifications.errors()
    assert "'photo' is an RGB image" in message and "Split RGB" in message


def test_a_model_fine_tuned_in_the_session_is_listed_at_once_and_opens_its_run_folder(widget, monkeypatch, tmp_path):
    monkeypatch.setattr(widget_module, "SESSION_MODELS", {})
    assert widget._model.choices[-1] == MODEL_FILE and widget._model.value == "isbi2012-membranes"
    add_session_model("fine-tuned 20260102-030405", tmp_path)
    assert widget._model.choices[-2:] == ("fine-tuned 20260102-030405", MODEL_FILE)
    assert widget._model.value == "isbi2012-membranes"  # the choice made stays
    widget._model.value = "fine-tuned 20260102-030405"
    assert widget.model_ref() == str(tmp_path)
    widget._model.value = MODEL_FILE
    add_session_model("fine-tuned 20260102-030406", tmp_path / "other")
    assert widget._model.value == MODEL_FILE and not widget._model_file.native.isHidden()
    assert widget._model.choices[-3:] == ("fine-tuned 20260102-030405", "fine-tuned 20260102-030406", MODEL_FILE)


@pytest.mark.timeout(60)
def test_a_4d_layer_is_refused_before_any_work(qtbot, widget, notifications):
    layer = widget.viewer.add_image(np.zeros((2, 2, 32, 32), np.float32), name="4d")
    segment(qtbot, widget, layer)
    assert [layer.name for layer in widget.viewer.layers] == ["4d"]
    (message,) = notifications.errors()
    assert "4 dimensions" in message


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "name, content, words",
    [
        ("no-such-model", None, "not a built-in model (known: isbi2012-membranes)"),
        ("broken.pt", b"not a checkpoint" * 8, "not a readable checkpoint"),
        ("broken.onnx", b"not an onnx model" * 8, "not a readable ONNX model"),
        ("broken.zip", b"not a zip" * 8, "not a readable zip file"),
    ],
)
def test_an_unknown_model_or_a_broken_file_is_one_line_in_a_notification(
    qtbot, widget, notifications, tmp_path, name, content, words
):
    layer = widget.viewer.add_image(np.zeros((32, 32), np.uint8), name="em")
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    widget._model.value = MODEL_FILE
    assert not widget._model_file.native.isHidden()  # shown once the model is "a file"
    widget._model_file.value = path if content is not None else name
    segment(qtbot, widget, layer)
    assert [layer.name for layer in widget.viewer.layers] == ["em"]
    (message,) = notifications.errors()
    assert words in message and "Traceback" not in message


@pytest.mark.timeout(120)
def test_a_bioimageio_package_chosen_as_a_file_segments_like_the_built_in_model(qtbot, widget, notifications, tmp_path):
    from biounet.deploy.bioimageio import write_package

    package = write_package("isbi2012-membranes", tmp_path / "isbi.zip", opset=None)
    image = synthetic_stack(slices=1, size=64)[0][0][0]
    layer = widget.viewer.add_image(image, name="em")
    segment(qtbot, widget, layer)
    builtin = widget.viewer.layers["em membrane"].data
    widget.viewer.layers.remove("em membrane")
    widget._model.value = MODEL_FILE
    widget._model_file.value = package
    segment(qtbot, widget, layer)
    assert notifications.errors() == []
    np.testing.assert_allclose(widget.viewer.layers["em membrane"].data, builtin, atol=1e-3)

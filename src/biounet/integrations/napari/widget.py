"""The "Segment with biounet" dock widget: an image layer, a model, TTA and an instance method in; the
membrane probability (and the cells) out, as new layers placed where the image lies.

With an instance method, the cells layer carries a row of measurements per cell (``layer.features``:
:mod:`biounet.instances.measure`'s columns, in the layer's unit when napari knows one), which "Save
measurements" writes as a CSV. The model list offers the built-in models, the models fine-tuned in this
session (:func:`add_session_model`, called by the Fine-tune widget) and any file.

The segmentation runs in a napari worker thread (:func:`napari.qt.threading.create_worker`) slice by
slice (:func:`biounet.integrations.napari.stack.segment_layer`): the viewer stays responsive, a progress bar
counts the slices and Cancel stops the run between two slices, adding nothing. The widget holds no
segmentation logic: it checks what the user chose, starts the worker and shows its outcome. Errors
caused by the user's choices (a layer biounet cannot segment, an unknown model, a broken file) are one
line in napari's notification area; anything else is a bug and keeps napari's traceback.
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import napari
import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, create_widget
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from biounet.core.errors import BiounetError, ConfigError, DataError, describe_os_error
from biounet.instances.measure import COLUMNS, write_objects_csv
from biounet.instances.methods import METHODS
from biounet.integrations.napari.stack import Segmentation, Slices, image_slices, segment_layer
from biounet.io.fileio import check_output_file
from biounet.model.pretrained import builtin_models
from biounet.models import model_kind
from biounet.segment.objects import OBJECTS_SUFFIX, calibration

DEFAULT_MODEL = "isbi2012-membranes"
MODEL_FILE = "a file or run folder..."  # the model choice that enables the path field
NO_CELLS = "none"
# Models fine-tuned in this napari session: the name shown in the model lists -> the run folder. Filled by
# add_session_model (the Fine-tune widget), read by every model list when its choices are reset.
SESSION_MODELS: dict[str, str] = {}
_MODEL_LISTS: weakref.WeakSet[Any] = weakref.WeakSet()  # the open widgets with a model list, to refresh


def follow_session_models(widget: Any) -> None:
    """Have ``widget.refresh_models()`` called whenever a session model is added (held weakly)."""
    _MODEL_LISTS.add(widget)


def add_session_model(name: str, run_dir: str | Path) -> None:
    """Offer the model in ``run_dir`` as ``name`` in every open model list (Segment, Fine-tune), at once."""
    SESSION_MODELS[name] = str(run_dir)
    for widget in list(_MODEL_LISTS):
        widget.refresh_models()


def model_choices(*_: object) -> list[str]:
    """The model list: the built-in models, this session's fine-tuned ones, then "a file or run folder..."."""
    return [*builtin_models(), *SESSION_MODELS, MODEL_FILE]


def refresh_model_list(models: ComboBox) -> None:
    """Read a model list's choices again (a session model was added), "a file or run folder..." staying last
    and the choice made staying chosen (Qt appends new items: the file choice is taken out and put back)."""
    chosen = models.value
    models.del_choice(MODEL_FILE)
    models.reset_choices()
    models.value = chosen


def model_path(choice: str) -> str:
    """What a model choice opens: a session model's run folder, else the choice itself (a built-in name)."""
    return SESSION_MODELS.get(choice, choice)


def layer_calibration(layer: napari.layers.Layer) -> tuple[tuple[float, float] | None, str]:
    """The (y, x) pixel size and unit to measure a layer's cells in (its scale and units in napari); pixels
    when napari knows no unit for it (its default, "pixel") or its pixels are not square."""
    units = getattr(layer, "units", None)
    unit = str(units[-1]) if units is not None and len(units) else "pixel"
    size = (float(layer.scale[-2]), float(layer.scale[-1]))
    return calibration(size, unit, layer.name, show_info)


def run_segmentation(
    slices: Slices,
    model: str,
    kind: str,
    tta: bool,
    method: str | None,
    scale: tuple[tuple[float, float] | None, str] = (None, "pixel"),
) -> Generator[int, None, Segmentation | str]:
    """The worker's generator: yields the slices done, returns the :class:`Segmentation` or, for an
    error of the user's input (a biounet error, a file that cannot be read, too little memory), its
    message for the notification area. ``scale``: the cells' calibration (:func:`layer_calibration`)."""
    try:
        return (yield from segment_layer(slices, model, tta, method, kind=kind, calibration=scale))
    except BiounetError as exc:
        return str(exc)
    except OSError as exc:
        return describe_os_error(exc)
    except MemoryError:
        return (
            f"not enough memory to segment layer {slices.name!r}; close other programs or layers, or segment it "
            f"block by block on the command line (`biounet predict VOLUME --format ome-zarr`)"
        )


def layer_pixels(layer: napari.layers.Image) -> Any:
    """The full-resolution array of an image layer (level 0 of a multiscale one), not loaded."""
    return layer.data[0] if layer.multiscale else layer.data


class ModelChoice:
    """The model picker both widgets share: a list of built-in and session models, then MODEL_FILE,
    which shows the file field. The widget sets ``_model``, ``_model_file`` and ``_closed``."""

    _model: ComboBox
    _model_file: FileEdit
    _closed: bool

    def _on_model_choice(self, value: str) -> None:
        self._model_file.visible = value == MODEL_FILE

    def refresh_models(self) -> None:
        """Read the model list again (a model was fine-tuned); the choice made stays."""
        if not self._closed:
            refresh_model_list(self._model)

    def model_ref(self) -> str:
        """The model chosen: a built-in name, a session model's run folder or the path in the file field."""
        if self._model.value != MODEL_FILE:
            return model_path(str(self._model.value))
        path = self._model_file.value
        return "" if path is None or str(path) in ("", ".") else str(path)


class SegmentWidget(ModelChoice, Container):
    """Segment an image layer with a biounet model; docked by Plugins > Segment with biounet (biounet)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.worker: Any = None  # the running worker, None when idle
        self._cancelled = False
        self._closed = False  # the widget's Qt side is gone (the viewer closed): a running worker is only stopped
        self._objects: list[dict[str, object]] | None = None  # the measurements of the last cells added
        super().__init__(widgets=self._fields())
        self._model.changed.connect(self._on_model_choice)
        self._run.changed.connect(self.start)
        self._cancel.changed.connect(self.cancel)
        self._save.changed.connect(self.save_objects)
        self.native.destroyed.connect(self._on_destroyed)
        follow_session_models(self)

    def _fields(self) -> list[Any]:
        """The widget's fields and buttons, top to bottom."""
        # magicgui's napari layer choice: the viewer's Image layers, updated as layers come and go
        self._image = cast(ComboBox, create_widget(annotation=napari.layers.Image, label="image"))
        self._model = ComboBox(
            label="model",
            choices=model_choices,  # called again whenever the choices are reset (a new session model)
            value=DEFAULT_MODEL if DEFAULT_MODEL in builtin_models() else MODEL_FILE,
            tooltip="a built-in model, or a checkpoint (.pt), run folder, exported .onnx/.pt2 or bioimage.io .zip",
        )
        self._model_file = FileEdit(
            label="model file", mode=FileDialogMode.EXISTING_FILE, visible=self._model.value == MODEL_FILE
        )
        self._tta = CheckBox(text="test-time augmentation (8 flips/rotations, 8x slower)", value=False)
        self._cells = ComboBox(
            label="cells",
            choices=[NO_CELLS, *METHODS],
            value=NO_CELLS,
            tooltip="an instance method for a cells layer (biounet.instances.methods), or none",
        )
        self._run = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="slices", min=0, max=1, value=0)
        self._status = Label(value="")
        self._csv = FileEdit(
            label="measurements", mode=FileDialogMode.OPTIONAL_FILE, filter="*.csv", tooltip="the CSV file to save"
        )
        self._save = PushButton(text="Save measurements (CSV)", enabled=False)
        return [
            self._image,
            self._model,
            self._model_file,
            self._tta,
            self._cells,
            self._run,
            self._cancel,
            self._progress,
            self._status,
            self._csv,
            self._save,
        ]

    def _prepare(self) -> tuple[napari.layers.Image, Slices, str, str]:
        """The layer, its slices, the model and its kind, checked; a BiounetError says what is wrong."""
        layer = self._image.value
        if layer is None:
            raise DataError("no image layer to segment: open an image, or File > Open Sample > biounet")
        slices = image_slices(layer_pixels(layer), layer.rgb, layer.name)
        model = self.model_ref()
        if not model:
            raise ConfigError("no model file chosen: choose a .pt, .onnx, .pt2 or .zip file, or a built-in model")
        return layer, slices, model, model_kind(model)

    def start(self) -> None:
        """Check the choices and start segmenting in a worker thread (a user error: a notification)."""
        if self.worker is not None:
            return
        try:
            layer, slices, model, kind = self._prepare()
        except BiounetError as exc:
            show_error(str(exc))
            return
        method = None if self._cells.value == NO_CELLS else str(self._cells.value)
        self._cancelled = False
        self._progress.max, self._progress.value = slices.count, 0
        self._status.value = f"segmenting {layer.name} with {Path(model).name}..."
        self._run.enabled, self._cancel.enabled = False, True
        self.worker = create_worker(
            run_segmentation,
            slices,
            model,
            kind,
            bool(self._tta.value),
            method,
            layer_calibration(layer),
            _connect={
                "yielded": self._on_slice,
                "returned": lambda result: self._on_returned(layer, result),
                "aborted": self._on_aborted,
                "errored": self._on_errored,
                "finished": self._on_finished,
            },
            _progress={"total": slices.count, "desc": f"biounet: {layer.name}"},
        )

    def cancel(self) -> None:
        """Stop the run after the slice in progress; nothing is added."""
        if self.worker is not None:
            self._cancelled = True
            self._status.value = "cancelling after this slice..."
            self.worker.quit()

    def _on_destroyed(self, *_: object) -> None:
        self._closed = True
        if self.worker is not None:
            self._cancelled = True
            self.worker.quit()

    def _on_slice(self, done: int) -> None:
        if not self._closed:
            self._progress.value = done

    def _on_returned(self, layer: napari.layers.Image, result: Segmentation | str) -> None:
        if self._closed:
            return
        if isinstance(result, str):
            self._status.value = "failed: see the notification"
            show_error(result)
            return
        if self._cancelled:  # the last slice ended as Cancel was pressed
            self._on_aborted()
            return
        where = {"scale": layer.scale, "translate": layer.translate}
        self.viewer.add_image(
            result.membrane,
            name=f"{layer.name} membrane",
            colormap="magma",
            contrast_limits=(0.0, 1.0),
            blending="additive",
            **where,
        )
        if result.cells is not None:
            cells = self.viewer.add_labels(result.cells, name=f"{layer.name} cells", opacity=0.5, **where)
            self._show_objects(cells, layer, result.objects or [])
        self._status.value = f"done: {layer.name}"
        show_info(f"biounet segmented {layer.name}")

    def _show_objects(
        self, cells: napari.layers.Labels, image: napari.layers.Image, rows: list[dict[str, object]]
    ) -> None:
        """Attach the measurements to the cells layer (napari shows a cell's row under the cursor) and offer
        them for saving, beside the image's file by default."""
        table: dict[str, Any] = {"index": np.array([row["label"] for row in rows], np.int64)}
        table.update({key: np.array([row[key] for row in rows]) for key in COLUMNS})
        cells.features = table
        self._objects = rows
        self._save.enabled = True
        if str(self._csv.value) in ("", "."):
            source = image.source.path
            folder, stem = (Path(source).parent, Path(source).stem) if source else (Path.home(), image.name)
            self._csv.value = folder / f"{stem}{OBJECTS_SUFFIX}"

    def save_objects(self) -> None:
        """Write the last cells' measurements to the file chosen (a user error: a notification)."""
        if self._objects is None:
            return
        path = str(self._csv.value)
        try:
            if path in ("", ".", "None"):
                raise ConfigError("no file chosen for the measurements: type or choose a .csv file name first")
            write_objects_csv(check_output_file(path, "measurements"), self._objects)
        except BiounetError as exc:
            show_error(str(exc))
            return
        except OSError as exc:
            show_error(describe_os_error(exc))
            return
        self._status.value = f"saved the measurements of {len(self._objects)} cells to {Path(path).name}"
        show_info(f"biounet: measurements of {len(self._objects)} cells saved to {path}")

    def _on_aborted(self) -> None:
        if not self._closed:
            self._status.value = "cancelled: nothing added"

    def _on_errored(self, exc: Exception) -> None:
        # napari's worker already reports the exception (a bug: not a user error) with its traceback
        if not self._closed:
            self._status.value = f"failed: {type(exc).__name__}"

    def _on_finished(self) -> None:
        self.worker = None
        if not self._closed:
            self._run.enabled, self._cancel.enabled = True, False

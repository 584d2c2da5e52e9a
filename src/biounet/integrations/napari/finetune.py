"""The "Fine-tune biounet" dock widget: an image layer, a Labels layer painted on it and a base model in;
a fine-tuned model out, in a run folder of its own, offered at once in the Segment widget's model list.

The painted labels follow napari's convention: 0 (not painted) is left out of the loss, label k is class
k - 1 (for the 2-class membrane models 1 = membrane, 2 = cell). The widget holds no training logic:
:mod:`biounet.train.finetune` checks the choices (every refusal is one line in napari's notification area,
and starts nothing) and runs ``biounet train`` on the painted slices in a napari worker thread, while the
widget listens through :class:`biounet.train.hooks.TrainHooks`: each step moves the progress bar, each
checkpoint (every "preview every" steps, and the last) is segmented on the slice in view into the layer
"fine-tuned membrane", and Cancel asks the run to stop after the step in progress (the weights of that step
are saved, as at the end). The run folder holds the checkpoints, ``config.yaml`` and the painted labels as
they were at Start (``labels.tif``), and, when asked, a bioimage.io package.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import napari
import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from biounet.core.errors import BiounetError, ConfigError, DataError, describe_os_error
from biounet.integrations.napari.widget import (
    DEFAULT_MODEL,
    MODEL_FILE,
    ModelChoice,
    add_session_model,
    follow_session_models,
    layer_pixels,
    model_choices,
)
from biounet.model.pretrained import builtin_models
from biounet.train.finetune import DEFAULT_ROOT, LEGEND, FineTune, plan_fine_tune, preview_slice, run_fine_tune
from biounet.train.hooks import TrainHooks

PREVIEW = "fine-tuned membrane"  # the preview layer: class 0's probability (membrane, for the membrane models)
DEFAULT_STEPS, PREVIEW_EVERY = 200, 25


def fine_tune_or_message(plan: FineTune, hooks: TrainHooks, export: bool) -> dict[str, Any] | str:
    """The worker's function: the run's summary (:func:`biounet.train.finetune.run_fine_tune`) or, for an
    error of the user's input (a biounet error, a file that cannot be written, too little memory), its message
    for the notification area."""
    try:
        return run_fine_tune(plan, hooks, export)
    except BiounetError as exc:
        return str(exc)
    except OSError as exc:
        return describe_os_error(exc)
    except MemoryError:
        return (
            f"not enough memory to fine-tune on {plan.name!r}; close other programs or layers, or paint on a "
            f"smaller image (the checkpoints written so far are in {plan.run_dir})"
        )


def layer_labels(layer: napari.layers.Labels) -> np.ndarray:
    """The painted labels of a Labels layer (level 0 of a multiscale one), as a NumPy array."""
    return np.asarray(layer.data[0] if layer.multiscale else layer.data)


class FineTuneWidget(ModelChoice, Container):
    """Fine-tune a biounet model on painted labels; docked by Plugins > Fine-tune biounet (biounet)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.worker: Any = None  # the running worker, None when idle
        self.plan: FineTune | None = None  # the last run started
        self.outcome: dict[str, Any] | str | None = None  # its summary, or the message it failed with
        self._stop = threading.Event()  # Cancel: the run stops after the step in progress
        self._closed = False  # the widget's Qt side is gone: a running worker is only stopped
        self._layer: napari.layers.Image | None = None  # the image of the run, for the preview's place
        self._preview_z = 0  # the slice previewed: the one in view (read by the worker)
        super().__init__(widgets=self._fields())
        self._model.changed.connect(self._on_model_choice)
        self._run.changed.connect(self.start)
        self._cancel.changed.connect(self.cancel)
        self.native.destroyed.connect(self._on_destroyed)
        self.viewer.dims.events.current_step.connect(self._on_dims)
        follow_session_models(self)

    def _fields(self) -> list[Any]:
        """The widget's fields and buttons, top to bottom."""
        self._image = cast(ComboBox, create_widget(annotation=napari.layers.Image, label="image"))
        self._painted = cast(ComboBox, create_widget(annotation=napari.layers.Labels, label="painted labels"))
        self._legend = Label(value=LEGEND)
        self._model = ComboBox(
            label="base model",
            choices=model_choices,
            value=DEFAULT_MODEL if DEFAULT_MODEL in builtin_models() else MODEL_FILE,
            tooltip="a built-in model, a model fine-tuned in this session, or a checkpoint (.pt) or run folder",
        )
        self._model_file = FileEdit(
            label="model file", mode=FileDialogMode.EXISTING_FILE, visible=self._model.value == MODEL_FILE
        )
        self._new_classes = CheckBox(text="new classes (labels above the model's classes add outputs)", value=False)
        self._steps = SpinBox(label="steps", value=DEFAULT_STEPS, min=1, max=1_000_000)
        self._every = SpinBox(
            label="preview every", value=PREVIEW_EVERY, min=1, max=1_000_000, tooltip="steps between previews"
        )
        self._root = FileEdit(
            label="output folder",
            mode=FileDialogMode.EXISTING_DIRECTORY,
            value=DEFAULT_ROOT.expanduser(),
            tooltip="each run gets a new folder in it, named by the date and time: no run is ever overwritten",
        )
        self._export = CheckBox(text="also write a bioimage.io package (.zip)", value=False)
        self._run = PushButton(text="Start")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="steps", min=0, max=1, value=0)
        self._status = Label(value="")
        return [
            self._image,
            self._painted,
            self._legend,
            self._model,
            self._model_file,
            self._new_classes,
            self._steps,
            self._every,
            self._root,
            self._export,
            self._run,
            self._cancel,
            self._progress,
            self._status,
        ]

    def _plan(self) -> FineTune:
        """The run the choices describe, checked (:func:`biounet.train.finetune.plan_fine_tune`); a
        BiounetError says what is wrong."""
        image, labels = self._image.value, self._painted.value
        if image is None:
            raise DataError("no image layer to fine-tune on: open an image, or File > Open Sample > biounet")
        if labels is None:
            raise DataError(f"no labels layer: select the image, then Layers > New Labels Layer, and {LEGEND}")
        model = self.model_ref()
        if not model:
            raise ConfigError("no model file chosen: choose a checkpoint (.pt) or a run folder, or a built-in model")
        root = str(self._root.value)
        if root in ("", ".", "None"):
            raise ConfigError("no output folder chosen: choose the folder that receives the runs")
        return plan_fine_tune(
            layer_pixels(image),
            bool(image.rgb),
            layer_labels(labels),
            model,
            int(self._steps.value),
            root,
            new_classes=bool(self._new_classes.value),
            preview_every=int(self._every.value),
            names=(image.name, labels.name),
        )

    def start(self) -> None:
        """Check the choices and start fine-tuning in a worker thread (a user error: a notification)."""
        if self.worker is not None:
            show_error("a fine-tune is already running: wait for it to end, or press Cancel")
            return
        try:
            plan = self._plan()
        except BiounetError as exc:
            show_error(str(exc))
            return
        except OSError as exc:
            show_error(describe_os_error(exc))
            return
        self.plan, self.outcome, self._layer = plan, None, self._image.value
        self._stop.clear()
        self._preview_z = self._slice_in_view()
        self._progress.max, self._progress.value = plan.cfg.steps, 0
        self._status.value = f"fine-tuning on {len(plan.slices)} painted slice(s) of {plan.name} into {plan.run_dir}"
        self._run.enabled, self._cancel.enabled = False, True
        hooks = TrainHooks(
            on_step=self._on_step,
            should_stop=self._stop.is_set,
            on_checkpoint=lambda path: self._preview(plan, path),
        )
        self.worker = create_worker(
            fine_tune_or_message,
            plan,
            hooks,
            bool(self._export.value),
            _connect={"returned": self._on_returned, "errored": self._on_errored, "finished": self._on_finished},
        )

    def cancel(self) -> None:
        """Stop the run after the step in progress; its weights are saved."""
        if self.worker is not None:
            self._stop.set()
            self._status.value = "cancelling after this step (its weights are saved)..."

    def _on_destroyed(self, *_: object) -> None:
        self._closed = True
        self._stop.set()

    def _slice_in_view(self) -> int:
        """The slice of the run's image that the viewer shows (0 for a 2D image)."""
        if self.plan is None or self._layer is None or not self.plan.stacked:
            return 0
        z = int(round(float(self._layer.world_to_data(self.viewer.dims.point)[0])))
        return min(max(z, 0), self.plan.labels.shape[0] - 1)

    def _on_dims(self, *_: object) -> None:
        if self.worker is not None:
            self._preview_z = self._slice_in_view()

    def _preview(self, plan: FineTune, checkpoint: Path) -> None:
        """In the worker, after a checkpoint: segment the slice in view with it and show the result."""
        z = self._preview_z
        self._show_preview(z, preview_slice(plan, z, checkpoint)[0])

    @ensure_main_thread
    def _on_step(self, step: int, steps: int, loss: float) -> None:
        if not self._closed:
            self._progress.value = step
            if not self._stop.is_set():
                self._status.value = f"step {step} of {steps}, loss {loss:.4f}"

    @ensure_main_thread
    def _show_preview(self, z: int, membrane: np.ndarray) -> None:
        if self._closed or self.plan is None or self._layer is None:
            return
        shape = self.plan.labels.shape
        layer = self.viewer.layers[PREVIEW] if PREVIEW in self.viewer.layers else None
        if layer is None or layer.data.shape != shape:
            if layer is not None:
                self.viewer.layers.remove(layer)
            layer = self.viewer.add_image(
                np.zeros(shape, np.float32),
                name=PREVIEW,
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                blending="additive",
                scale=self._layer.scale,
                translate=self._layer.translate,
            )
        layer.data[z if self.plan.stacked else ...] = membrane
        layer.refresh()

    def _on_returned(self, result: dict[str, Any] | str) -> None:
        self.outcome = result
        if self._closed or self.plan is None:
            return
        if isinstance(result, str):
            self._status.value = "failed: see the notification"
            show_error(result)
            return
        self._progress.value = result["step"]
        run_dir, name = self.plan.run_dir, f"fine-tuned {self.plan.run_dir.name}"
        add_session_model(name, run_dir)  # in every model list at once, this one's too
        package = ", with a bioimage.io package" if result["package"] else ""
        saved = f"weights and painted labels in {run_dir}{package}"
        if result["stopped"]:
            self._status.value = f"cancelled at step {result['step']} of {self.plan.cfg.steps}: {saved}"
        else:
            self._status.value = f"done: {result['step']} steps; {saved}; segment with model {name!r}"
        show_info(f"biounet: {self._status.value}")

    def _on_errored(self, exc: Exception) -> None:
        # napari's worker already reports the exception (a bug: not a user error) with its traceback
        if not self._closed:
            self._status.value = f"failed: {type(exc).__name__}"

    def _on_finished(self) -> None:
        self.worker = None
        if not self._closed:
            self._run.enabled, self._cancel.enabled = True, False

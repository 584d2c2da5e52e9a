"""Fine-tuning on painted labels held in memory (what the napari Fine-tune widget runs): the checks that
refuse a run before anything is made, the run's configuration and data, and a short run end to end with
the tiny network as the base model."""

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import tifffile
from support import tiny_config, tiny_run

from biounet.core.config import TrainConfig
from biounet.core.errors import BiounetError, DataError
from biounet.data import IGNORE, synthetic_em_image
from biounet.model import checkpoint as ckpt_io
from biounet.train.finetune import (
    LABELS_FILE,
    fit_tile,
    new_run_dir,
    painted_data,
    plan_fine_tune,
    preview_slice,
    run_fine_tune,
)
from biounet.train.hooks import TrainHooks


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The tiny network trained one step: width 4, depth 2, 60-pixel tiles (20 out), 2 classes."""
    return tiny_run(tmp_path_factory.mktemp("base") / "run")


def painted(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic EM image and labels painted on two patches of it: 1 on membrane, 2 on cell pixels."""
    image, truth = synthetic_em_image(np.random.default_rng(seed), size)
    labels = np.zeros(image.shape, np.uint8)
    for y, x in ((4, 4), (size // 2, size // 2)):
        patch = truth[y : y + 20, x : x + 20]
        labels[y : y + 20, x : x + 20] = np.where(patch == 0, 1, 2)
    return image, labels


def test_a_plan_takes_the_base_network_and_only_the_painted_slices(base, tmp_path):
    image, labels = painted()
    stack, painted_stack = np.stack([image] * 3), np.zeros((3, 64, 64), np.uint8)
    painted_stack[1] = labels
    plan = plan_fine_tune(stack, False, painted_stack, str(base), 5, tmp_path / "runs", names=("em", "paint"))
    cfg = plan.cfg
    assert plan.slices == (1,) and plan.stacked and plan.run_dir.parent == tmp_path / "runs"
    assert plan.run_dir.is_dir() and not any(plan.run_dir.iterdir())
    assert (cfg.base_width, cfg.depth, cfg.padding, cfg.tile_size, cfg.classes) == (4, 2, "valid", 60, 2)
    assert cfg.fold == "all" and not cfg.validation and cfg.steps == 5 and cfg.painted
    assert cfg.init_from == str((base / "last.pt").resolve()) and cfg.out == str(plan.run_dir)
    data = painted_data(plan)
    assert data.names == ["em slice 1"] and data.images[0].shape == (1, 64, 64)
    np.testing.assert_array_equal(data.masks[0], labels.astype(np.int16) - 1)  # 0 -> IGNORE, k -> class k - 1
    assert IGNORE == -1 and data.images[0].min() >= -1 and data.images[0].max() <= 1
    labels[0, 0] = 3
    plan = plan_fine_tune(image, False, labels, str(base), 5, tmp_path / "runs", new_classes=True)
    assert plan.cfg.classes == 3 and plan.slices == (0,) and not plan.stacked


def too_small(image, labels):
    return image[4:7, 4:7], labels[4:7, 4:7]  # painted, but smaller than the smallest output tile


@pytest.mark.parametrize(
    "change, kwargs, words",
    [
        (lambda i, lab: (i, lab[:32]), {}, r"has shape \(32, 64\) but image layer 'image' has \(64, 64\)"),
        (lambda i, lab: (i, np.zeros_like(lab)), {}, "nothing is painted in labels layer 'labels'"),
        (lambda i, lab: (i, np.where(lab == 2, 3, lab)), {}, "holds label 3, but .* has 2 classes.*tick 'new classes'"),
        (lambda i, lab: (np.zeros((2, 2, 64, 64), np.uint8), lab), {}, "4 dimensions"),
        (lambda i, lab: (i, lab.astype(np.float32)), {}, "holds float32 values"),
        (lambda i, lab: (i, lab.astype(np.int16) - 1), {}, "negative labels"),
        (lambda i, lab: (np.stack([i] * 3, -1), lab), {"rgb": True}, "has 3 channel"),
        (too_small, {}, "too small for"),
        (lambda i, lab: (i, lab), {"steps": 0}, "at least one step"),
        (lambda i, lab: (i, lab), {"model": "model.onnx"}, "exported model"),
        (lambda i, lab: (i, lab), {"model": "no-such-model"}, "not a built-in model"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_makes_no_folder(base, tmp_path, change, kwargs, words):
    image, labels = change(*painted())
    args = {"rgb": False, "model": str(base), "steps": 5, **kwargs}
    with pytest.raises(BiounetError, match=words) as info:
        plan_fine_tune(image, args["rgb"], labels, args["model"], args["steps"], tmp_path / "runs")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_the_tile_shrinks_to_fit_a_small_image():
    tiny = tiny_config()
    assert fit_tile(tiny, 64, "m") == 60 and fit_tile(tiny, 16, "m") == 56  # outputs 20 and 16
    same = TrainConfig(padding="same", depth=4, tile_size=256)
    assert fit_tile(same, 300, "m") == 256 and fit_tile(same, 100, "m") == 96
    for cfg, side in ((tiny, 3), (same, 10)):
        with pytest.raises(DataError, match="too small for m"):
            fit_tile(cfg, side, "m")


def test_a_new_run_folder_never_is_an_existing_one(tmp_path):
    now = datetime(2026, 1, 2, 3, 4, 5)
    first, second = new_run_dir(tmp_path, now), new_run_dir(tmp_path, now)
    assert (first.name, second.name) == ("20260102-030405", "20260102-030405-2")
    assert first.is_dir() and second.is_dir()


@pytest.mark.timeout(300)
def test_a_short_run_saves_weights_labels_and_a_package_and_previews_with_its_checkpoints(base, tmp_path):
    image, labels = painted()
    plan = plan_fine_tune(image, False, labels, str(base), 2, tmp_path / "runs", preview_every=1)
    labels[:] = 0  # painting on after Start changes nothing in the run: it holds a copy
    steps, previews = [], []
    hooks = TrainHooks(
        on_step=lambda step, total, loss: steps.append((step, total)),
        on_checkpoint=lambda path: previews.append(preview_slice(plan, 0, path, device="cpu")),
    )
    summary = run_fine_tune(plan, hooks, export=True)
    run = plan.run_dir
    assert summary["step"] == 2 and not summary["stopped"] and steps == [(1, 2), (2, 2)]
    assert (run / "config.yaml").is_file() and ckpt_io.load(run)["step"] == 2
    np.testing.assert_array_equal(tifffile.imread(run / LABELS_FILE), plan.labels)
    assert plan.labels.max() == 2 and summary["package"] == str(run / f"{run.name}.zip")
    assert Path(summary["package"]).stat().st_size > 1000
    assert len(previews) == 2 and previews[0].shape == (2, 64, 64)
    np.testing.assert_allclose(previews[-1].sum(axis=0), 1.0, atol=1e-4)


def test_the_widget_runs_the_documented_command_line_recipe(base, tmp_path):
    """configs/finetune-cpu.yaml (docs/finetune.md's command) and the widget's run train the same way."""
    from biounet.core.config import load_yaml

    recipe = load_yaml(Path(__file__).parents[2] / "configs" / "finetune-cpu.yaml")
    image, labels = painted()
    cfg = plan_fine_tune(image, False, labels, str(base), recipe["steps"], tmp_path / "runs").cfg
    for key, value in recipe.items():
        if key not in ("init_from", "checkpoint_every", "batch_size"):  # the widget's: the base model's batch
            assert getattr(cfg, key) == value, key
    assert cfg.class_balance and cfg.border_weight == 10.0

"""experiments/watershed_vrand.py: the V_rand post-processing probe the README's targets cite."""

import numpy as np
import pytest
from support import load_experiment

from biounet.evaluation.challenge import THRESHOLDS, thinned_segmentation, v_rand_score


@pytest.fixture(scope="module")
def probe():
    return load_experiment("watershed_vrand")


def two_cells_with_a_gap():
    """Two cells split by a membrane whose middle is faint (0.6): thresholding at 0.5 merges them."""
    cell = np.ones((40, 40), np.float32)
    cell[:, 19:21] = 0.05
    cell[18:22, 19:21] = 0.6
    mask = np.ones((40, 40), np.int64)
    mask[:, 19:21] = 0
    return cell, mask


def test_watershed_lines_close_a_faint_gap(probe):
    cell, mask = two_cells_with_a_gap()
    assert thinned_segmentation(cell > 0.5).max() == 1
    fixed = probe.watershed_map(cell, core=0.8, min_size=50)
    assert thinned_segmentation(fixed > 0.5).max() == 2
    truth = thinned_segmentation(mask == 1)
    fixed_score = v_rand_score(truth, thinned_segmentation(fixed > 0.5))
    assert fixed_score > v_rand_score(truth, thinned_segmentation(cell > 0.5))
    # away from the lines the map is the cell probability unchanged
    assert np.array_equal(fixed[:, :15], cell[:, :15])


def test_without_a_large_enough_core_the_map_is_unchanged(probe):
    cell, _ = two_cells_with_a_gap()
    # each core is 40 x 19 = 760 pixels: too small at min_size 1000, so no basin and no line
    assert np.array_equal(probe.watershed_map(cell, core=0.8, min_size=1000), cell)
    assert probe.watershed_map(cell, core=0.8, min_size=760).min() == 0.0  # 760 pixels are enough


def test_stack_score_is_the_best_threshold_for_the_mean(probe):
    table = np.zeros((len(THRESHOLDS), 2))
    table[3] = [0.9, 0.5]  # mean 0.70
    table[7] = [0.6, 0.85]  # mean 0.725: the best threshold for the stack, not per image
    assert probe.stack_score(table) == pytest.approx(0.725)


def test_too_few_folds_is_a_clear_error(probe, tmp_path, capsys):
    (tmp_path / "fold-0").mkdir()
    assert probe.main([str(tmp_path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "0 fold folder(s)" in err and "biounet cv" in err


def test_cached_probabilities_are_reused_only_for_the_same_checkpoint(probe, isbi_data, tmp_path, monkeypatch):
    from support import tiny_config

    from biounet.model import checkpoint as ckpt_io
    from biounet.model.unet import build_model

    cfg = tiny_config(fold=1, padding="same")
    run, cache = tmp_path / "fold-1", tmp_path / "cache"
    run.mkdir()
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 4, build_model(cfg).state_dict()), run / "last.pt")
    fold, cells, masks = probe.held_out_cells(run, isbi_data, False, cache)
    assert fold == 1 and len(cells) == 6 and cells[0].shape == masks[0].shape == (512, 512)
    assert np.array_equal(masks[0], isbi_data.masks[4])  # fold 1 holds out slices 4, 6, 7, 9, 18, 19

    def no_segmenting(*args, **kwargs):
        raise AssertionError("segmented again although the cache holds this checkpoint's maps")

    monkeypatch.setattr(probe, "segment", no_segmenting)
    _, again, _ = probe.held_out_cells(run, isbi_data, False, cache)
    assert all(np.array_equal(a, b) for a, b in zip(cells, again))
    # a newer checkpoint in the same folder: the cached maps are stale and are not used
    ckpt_io.atomic_save(ckpt_io.payload(cfg.to_dict(), 6, build_model(cfg).state_dict()), run / "last.pt")
    with pytest.raises(AssertionError, match="segmented again"):
        probe.held_out_cells(run, isbi_data, False, cache)

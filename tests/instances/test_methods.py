"""Instance methods on small synthetic maps: the faint gap that thresholding merges is split by the
graph methods, touching objects are separated, and instance maps score as the challenge scores them."""

import numpy as np
import pytest
from scipy import ndimage

from biounet.core.errors import ConfigError, DataError
from biounet.evaluation.challenge import challenge_scores
from biounet.instances.methods import METHODS, instance_labels, method_params, parse_params
from biounet.instances.scoring import boundary_map, object_scores

SIDE, WALL = 36, 3
GAP_ROWS = slice(15, 21)  # six rows of the membrane between cells 1 (top left) and 2 (top middle)


def cell_grid(gap: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cell probability, true cells): 2 x 3 square cells behind 3-pixel membranes, with noise and an
    organelle (cell probability 0.55) in each cell, so that the superpixels over-segment every cell.
    The membrane between cells 1 and 2 fades to ``gap`` over six pixels."""
    rng = np.random.default_rng(seed)
    h, w = 2 * SIDE + 3 * WALL, 3 * SIDE + 4 * WALL
    truth = np.zeros((h, w), np.int64)
    for k in range(6):
        y0, x0 = WALL + (k // 3) * (SIDE + WALL), WALL + (k % 3) * (SIDE + WALL)
        truth[y0 : y0 + SIDE, x0 : x0 + SIDE] = k + 1
    prob = np.clip(np.where(truth > 0, 0.95, 0.05) + rng.normal(0, 0.03, (h, w)), 0, 1)
    yy, xx = np.mgrid[:h, :w]
    for k in range(1, 7):
        ys, xs = np.nonzero(truth == k)
        cy, cx = ys.mean() + rng.integers(-5, 6), xs.mean() + rng.integers(-5, 6)
        prob[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = 0.55
    prob[GAP_ROWS, WALL + SIDE : 2 * WALL + SIDE] = gap
    return prob, truth


def cell_ids(labels: np.ndarray, truth: np.ndarray) -> list[int]:
    """The label of each true cell, asserting that it covers the whole cell (no split)."""
    out = []
    for k in range(1, truth.max() + 1):
        ids = np.unique(labels[truth == k])
        assert len(ids) == 1, f"true cell {k} is split into {ids}"
        out.append(int(ids[0]))
    return out


def assert_ids(labels: np.ndarray) -> None:
    assert labels.dtype == np.uint32
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))


def challenge(labels: np.ndarray, truth: np.ndarray) -> dict:
    """The challenge's measures of an instance map: its boundary map scored without a sweep."""
    return challenge_scores([1.0 - boundary_map(labels)], [(truth > 0).astype(np.int64)], thresholds=(0.5,))


@pytest.mark.parametrize("gap", [0.6, 0.95])
def test_graph_methods_split_a_faint_gap_that_thresholding_merges(gap):
    prob, truth = cell_grid(gap)
    thresholded = ndimage.label(prob > 0.5)[0]
    assert thresholded[truth == 1][0] == thresholded[truth == 2][0]  # the gap merges cells 1 and 2
    assert challenge(thresholded, truth)["v_rand"] < 0.9
    for method, params in [
        ("multicut", {}),
        ("multicut", {"solver": "kernighan-lin"}),
        ("multicut", {"weighting": "length"}),
        ("gasp", {}),
        ("gasp", {"linkage": "mutex_watershed"}),
    ]:
        labels = instance_labels(prob, method, **params)
        assert_ids(labels)
        assert len(set(cell_ids(labels, truth))) == 6, (method, params)  # one id per cell, 1 and 2 apart
        scores = challenge(labels, truth)
        assert scores["v_rand"] == pytest.approx(1.0) and scores["v_info"] == pytest.approx(1.0)


def test_todays_watershed_splits_a_dim_gap_but_merges_a_missing_one():
    # its cores (p > 0.9) stay apart across a gap of 0.6; a gap as bright as the cells joins them
    dim = instance_labels(cell_grid(0.6)[0])
    ids = cell_ids(dim, cell_grid(0.6)[1])
    assert ids[0] != ids[1]
    prob, truth = cell_grid(0.95)
    merged = instance_labels(prob, "watershed")
    assert_ids(merged)
    assert cell_ids(merged, truth)[0] == cell_ids(merged, truth)[1]
    assert np.array_equal(instance_labels(prob), merged)  # watershed is the default


def test_a_cell_that_is_one_superpixel_stays_one_cell():
    # one disc with a membrane dot inside: a single superpixel, a graph without edges (length
    # weighting divided by the longest edge of none before the fix)
    yy, xx = np.mgrid[:96, :96]
    prob = np.zeros((96, 96), np.float32)
    prob[(yy - 48) ** 2 + (xx - 48) ** 2 < 40**2] = 1.0
    prob[(yy - 48) ** 2 + (xx - 60) ** 2 < 9] = 0.0
    prob = ndimage.gaussian_filter(prob, 1.0)
    inside = (yy - 48) ** 2 + (xx - 48) ** 2 < 35**2
    for weighting in ("none", "length"):
        labels = instance_labels(prob, "multicut", beta=0.4, weighting=weighting)
        assert len(np.unique(labels[inside & (labels > 0)])) == 1, weighting


def test_boundary_bias_moves_the_cut():
    prob = cell_grid(0.95)[0]
    # higher beta: more cuts. At 0.9 the 4 superpixels of each cell stay apart; at 0.05 cells merge
    for method in ("multicut", "gasp"):
        counts = [int(instance_labels(prob, method, beta=b).max()) for b in (0.05, 0.5, 0.9)]
        assert counts[0] < 6 and counts[1] == 6 and counts[2] > 6, (method, counts)


def touching_discs() -> tuple[np.ndarray, np.ndarray]:
    """(foreground probability, true objects): two discs that touch, a 16-pixel speck, a 9 x 9 square."""
    yy, xx = np.mgrid[:64, :100]
    truth = np.zeros((64, 100), np.int64)
    truth[(yy - 32) ** 2 + (xx - 30) ** 2 < 15**2] = 1
    truth[(yy - 32) ** 2 + (xx - 56) ** 2 < 13**2] = 2
    truth[4:8, 90:94] = 3
    truth[52:61, 80:89] = 4
    rng = np.random.default_rng(0)
    prob = np.clip(np.where(truth > 0, 0.9, 0.1) + rng.normal(0, 0.05, truth.shape), 0, 1)
    return prob, truth


def test_objects_splits_touching_discs_and_drops_specks():
    prob, truth = touching_discs()
    assert ndimage.label(prob > 0.5)[0][truth == 1][0] == ndimage.label(prob > 0.5)[0][truth == 2][0]
    labels = instance_labels(prob, "objects", min_size=50)
    assert_ids(labels)
    assert labels.max() == 3  # two discs and the square; the speck is under 50 pixels
    assert (labels[truth == 3] == 0).all()
    scores = object_scores(labels, truth)
    assert scores["matched"] == 3 and scores["true_objects"] == 4 and scores["f1"] == pytest.approx(6 / 7)
    assert scores["matched_iou"] > 0.85
    assert instance_labels(prob, "objects", min_size=10).max() == 4  # the speck kept
    assert instance_labels(prob, "objects").max() == 2  # default 100: the square (81 pixels) goes too


def test_objects_keeps_an_elongated_object_whole():
    yy, xx = np.mgrid[:64, :100]
    prob = np.where(((yy - 32) / 10.0) ** 2 + ((xx - 50) / 40.0) ** 2 < 1, 0.95, 0.05)
    assert instance_labels(prob, "objects").max() == 1


def test_empty_and_full_maps():
    for method in [m for m in METHODS if METHODS[m].inputs == "boundary"]:
        empty = instance_labels(np.zeros((20, 30)), method)
        assert empty.dtype == np.uint32 and empty.shape == (20, 30)
        if method != "watershed":
            full = instance_labels(np.ones((20, 30), np.float32), method)
            assert full.min() == 1 and full.max() == 1, method  # one object, no background
    assert instance_labels(np.zeros((20, 30)), "multicut").max() == 0


def test_unknown_method_and_parameters_are_refused():
    prob = cell_grid(0.6)[0]
    with pytest.raises(ConfigError, match="unknown instance method 'mc'.*watershed, multicut, gasp, objects"):
        instance_labels(prob, "mc")
    with pytest.raises(ConfigError, match="no parameter bta; its parameters: boundary_threshold"):
        instance_labels(prob, "multicut", bta=0.4)
    with pytest.raises(ConfigError, match="watershed has no parameter beta; its parameters: none"):
        instance_labels(prob, "watershed", beta=0.4)
    for method, params, message in [
        ("multicut", {"beta": 1.0}, "out of range; it must be in \\(0, 1\\)"),
        ("multicut", {"solver": "ilp"}, "not one of gaec, kernighan-lin"),
        ("multicut", {"weighting": "area"}, "not one of none, length"),
        ("gasp", {"linkage": "quantile"}, "not one of average, single"),
        ("objects", {"min_size": 2.5}, "not an integer"),
        ("objects", {"min_size": -1}, "at least 0"),
        ("objects", {"threshold": "high"}, "not a number"),
        ("objects", {"sigma_seeds": True}, "not a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            method_params(method, **params)


def test_parameters_resolve_and_parse():
    assert method_params("watershed") == {}
    settings = method_params("multicut", beta=0.4, min_size=np.int64(20))
    assert settings["beta"] == 0.4 and settings["min_size"] == 20 and settings["solver"] == "gaec"
    assert set(settings) == set(METHODS["multicut"].defaults)
    parsed = parse_params("gasp", ["beta=0.3", "linkage=complete", "min_size=25"])
    assert parsed["beta"] == 0.3 and parsed["linkage"] == "complete" and parsed["min_size"] == 25
    assert isinstance(parse_params("objects", ["sigma_seeds=1"])["sigma_seeds"], float)
    for items, message in [(["beta"], "not KEY=VALUE"), (["min_size=2.5"], "not a whole number"), (["x=1"], "no para")]:
        with pytest.raises(ConfigError, match=message):
            parse_params("multicut", items)


def test_bad_probability_maps_are_refused():
    for bad, message in [
        (np.zeros((2, 8, 8)), "one \\(H, W\\) cell probability map"),
        (np.full((8, 8), np.nan), "NaN"),
        (np.full((8, 8), 2.0), "outside \\[0, 1\\]"),
        (np.full((8, 8), "a"), "dtype"),
    ]:
        with pytest.raises(DataError, match=message):
            instance_labels(bad, "multicut")


# --- methods that read affinities --------------------------------------------------------------


def grid_affinities() -> tuple[np.ndarray, np.ndarray]:
    """(exact affinities for DEFAULT_OFFSETS, the labels they come from): cell_grid's six cells, each
    grown over half of its membrane so that the labels partition the image."""
    from biounet.data.affinities import DEFAULT_OFFSETS, affinity_targets
    from biounet.data.affinities import instance_labels as grown

    labels = grown((cell_grid(0.05)[1] > 0).astype(np.int64))
    return affinity_targets(labels, DEFAULT_OFFSETS)[0], labels


def faint_border(aff: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``aff`` with the nearest-neighbour edges across the border of cells 1 and 2 at 0.6 ("probably the
    same cell"), the long-range edges across it still 0: what a network that misses a faint membrane
    but sees the two cells' different content may predict."""
    from biounet.data.affinities import DEFAULT_OFFSETS

    out = aff.copy()
    c = DEFAULT_OFFSETS.index((0, -1))  # channel c at p: the edge to the left neighbour
    ys, xs = np.nonzero((labels[:, :-1] == 1) & (labels[:, 1:] == 2))
    out[c][ys, xs + 1] = 0.6
    return out


@pytest.mark.parametrize("method", ["mws", "multicut-aff", "gasp-aff"])
def test_affinity_methods_recover_a_label_image_from_its_exact_affinities(method):
    from biounet.data.affinities import DEFAULT_OFFSETS

    aff, truth = grid_affinities()
    labels = instance_labels(None, method, affinities=aff, offsets=DEFAULT_OFFSETS)
    assert_ids(labels)
    assert labels.max() == 6
    if method == "mws":  # the partition itself, pixel for pixel
        assert len(np.unique(truth * 10 + labels)) == 6
        return
    # the graph methods' superpixels divide the two-pixel boundary line between its sides: a few pixels
    # at the corners where three cells meet may fall on the other side
    majority = []
    for k in range(1, 7):
        ids, counts = np.unique(labels[truth == k], return_counts=True)
        assert counts.max() >= 0.99 * counts.sum(), (k, ids, counts)
        majority.append(int(ids[np.argmax(counts)]))
    assert len(set(majority)) == 6


def test_long_range_affinities_keep_apart_cells_whose_border_is_faint():
    """Why the graph methods weigh every offset: the nearest-neighbour channels see the border of cells
    1 and 2 faintly (affinity 0.6), the long-range ones cut it. The boundary-map methods, which read the
    nearest neighbours alone, merge the two cells; every affinity method keeps them apart."""
    from biounet.data.affinities import DEFAULT_OFFSETS, boundary_from_affinities

    aff, truth = grid_affinities()
    faint = faint_border(aff, truth)
    cell_prob = 1.0 - boundary_from_affinities(faint, DEFAULT_OFFSETS)
    for method in ("multicut", "gasp"):
        merged = instance_labels(cell_prob, method)
        assert merged[truth == 1][0] == merged[truth == 2][0], method
    for method in ("mws", "multicut-aff", "gasp-aff"):
        labels = instance_labels(None, method, affinities=faint, offsets=DEFAULT_OFFSETS)
        assert labels.max() == 6 and labels[truth == 1][0] != labels[truth == 2][0], method


def test_mws_parameters_move_the_partition():
    from biounet.data.affinities import DEFAULT_OFFSETS

    aff, truth = grid_affinities()
    noisy = np.clip(aff + np.random.default_rng(0).normal(0, 0.25, aff.shape), 0, 1).astype(np.float32)

    def mws(**params):  # around the paper's setting (every repulsive edge, no bias), not the defaults
        setting = {"stride": 1, "attractive_bias": 0.0, "min_size": 25, **params}
        return instance_labels(None, "mws", affinities=noisy, offsets=DEFAULT_OFFSETS, **setting)

    # a higher attractive bias merges earlier: fewer segments; +0.3 finds the six cells again
    counts = [int(mws(attractive_bias=b).max()) for b in (-0.3, 0.0, 0.3)]
    assert counts[0] > counts[1] > counts[2] == 6
    # the size filter merges the fragments under min_size into a neighbour
    unfiltered, filtered = mws(min_size=0), mws(min_size=25)
    assert unfiltered.max() > filtered.max()
    assert np.bincount(filtered.ravel())[1:].min() >= 25
    # every other repulsive edge: still a partition into labels 1..n
    assert_ids(mws(stride=2))


def test_affinity_methods_on_empty_and_full_affinities():
    from biounet.data.affinities import DEFAULT_OFFSETS

    shape = (len(DEFAULT_OFFSETS), 20, 30)
    for method in ("mws", "multicut-aff", "gasp-aff"):
        full = instance_labels(None, method, affinities=np.ones(shape, np.float32), offsets=DEFAULT_OFFSETS)
        assert full.min() == 1 and full.max() == 1, method  # every edge attracts: one object
        cut = instance_labels(None, method, affinities=np.zeros(shape), offsets=DEFAULT_OFFSETS)
        assert cut.dtype == np.uint32 and cut.shape == (20, 30)
        if method != "mws":  # a boundary map that is boundary everywhere has no cell
            assert cut.max() == 0


def test_an_affinity_method_without_affinities_names_the_fix():
    from biounet.data.affinities import DEFAULT_OFFSETS
    from biounet.instances.methods import check_inputs, needs_affinities

    prob = cell_grid(0.6)[0]
    for method in ("mws", "multicut-aff", "gasp-aff"):
        assert needs_affinities(method)
        with pytest.raises(ConfigError, match=f"{method} reads predicted affinities.*--affinities mws12"):
            instance_labels(prob, method)
    with pytest.raises(ConfigError, match="mws reads predicted affinities, but the model predicts none"):
        check_inputs(["watershed", "mws"], ())
    check_inputs(["watershed", "mws"], DEFAULT_OFFSETS)  # a model with affinities: fine
    check_inputs(["watershed", "multicut"], ())  # boundary methods need none
    aff, _ = grid_affinities()
    # a boundary method reads the cell probability and ignores affinities given beside it
    assert np.array_equal(
        instance_labels(prob, "multicut", affinities=aff, offsets=DEFAULT_OFFSETS), instance_labels(prob, "multicut")
    )
    with pytest.raises(DataError, match="do not match the 12 offsets"):
        instance_labels(None, "mws", affinities=aff[:5], offsets=DEFAULT_OFFSETS)
    with pytest.raises(DataError, match="NaN"):
        instance_labels(None, "mws", affinities=np.full_like(aff, np.nan), offsets=DEFAULT_OFFSETS)
    with pytest.raises(ConfigError, match="repeats an edge set"):
        instance_labels(None, "multicut-aff", affinities=aff[:3], offsets=[(-1, 0), (0, -1), (1, 0)])
    with pytest.raises(DataError, match="cell probability map; pass it"):
        instance_labels(None, "watershed")


def test_affinity_method_parameters_are_checked():
    assert method_params("mws") == {"stride": 2, "attractive_bias": -0.1, "min_size": 100}
    assert parse_params("mws", ["stride=2", "attractive_bias=-0.1"])["stride"] == 2
    for params, message in [
        ({"stride": 0}, "at least 1"),
        ({"stride": 1.5}, "not an integer"),
        ({"attractive_bias": 2.0}, "in \\[-1, 1\\]"),
        ({"min_size": -1}, "at least 0"),
        ({"beta": 0.4}, "mws has no parameter beta"),
    ]:
        with pytest.raises(ConfigError, match=message):
            method_params("mws", **params)
    assert method_params("gasp-aff", linkage="complete")["linkage"] == "complete"
    assert {"solver", "weighting", "beta"} <= set(method_params("multicut-aff"))


def test_defaults_are_what_the_recorded_cv_chose():
    """Each searched parameter's default is the setting cv chose most often on the recorded runs: the
    boundary methods' on the CPU recipe's 5 folds (docs/results/cv-cpu-labels/), the affinity methods'
    on the affinity recipe's (docs/results/cv-aff-2400-labels/; docs/instances.md)."""
    import json
    from collections import Counter
    from pathlib import Path

    from biounet.evaluation.selection import GRIDS

    docs = Path(__file__).resolve().parents[2] / "docs" / "results"
    recorded = {
        "cv-cpu-labels": ("multicut", "gasp"),
        "cv-aff-2400-labels": ("mws", "multicut-aff", "gasp-aff"),
    }
    for folder, methods in recorded.items():
        for method in methods:
            chosen = json.loads((docs / folder / f"cv-labels-{method}.json").read_text())
            assert set(chosen) == {"0", "1", "2", "3", "4"}, (folder, method)
            votes = Counter(tuple(r["params"][p] for p in GRIDS[method]) for r in chosen.values())
            defaults = tuple(METHODS[method].defaults[p] for p in GRIDS[method])
            assert defaults == votes.most_common(1)[0][0], (method, votes)


def test_methods_and_their_parameters_from_the_command_line():
    from biounet.instances.methods import parse_method_params, parse_methods

    assert parse_methods("multicut, mws") == ["multicut", "mws"]
    for bad in ("", "magic", "mws,mws"):
        with pytest.raises(ConfigError, match="comma-separated instance methods"):
            parse_methods(bad)
    assert parse_method_params(["multicut"], ["beta=0.3"])["multicut"]["beta"] == 0.3
    both = parse_method_params(["multicut", "mws"], ["multicut:beta=0.3", "mws:stride=2"])
    assert both["multicut"]["beta"] == 0.3 and both["mws"]["stride"] == 2 and both["mws"]["min_size"] == 100
    with pytest.raises(ConfigError, match="say whose parameter it is, METHOD:beta=0.3"):
        parse_method_params(["multicut", "mws"], ["beta=0.3"])
    with pytest.raises(ConfigError, match="names 'gasp', which is not a --labels method"):
        parse_method_params(["multicut"], ["gasp:beta=0.3"])

"""Instance segmentation of a cell probability map: a registry of methods, the one-pixel boundary
map the ISBI 2012 challenge scores, and object-level scores.

Every method takes the (H, W) probability that a pixel is inside a cell (class 1; the membrane
probability is ``1 - cell_prob``) and returns (H, W) uint32 labels, 0 where it leaves background
or boundary, ids 1..n. The graph methods run python-elf on its bioimage-cpp backend (Beier et al.,
Nature Methods 2017; Bailoni et al., GASP, 2022): superpixels from a distance-transform watershed
of the membrane probability, their region adjacency graph, the mean membrane probability on each
edge, then a partition of the graph. Defaults are the literature's (elf's ``DEFAULT_WS_KWARGS``,
boundary bias 0.5) until they are chosen on training folds. No PyTorch.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.instances.labels import relabel

ParamValue = float | int | str
# elf parallelises within one image; the volume path parallelises across slices and blocks instead
_THREADS = 1


@dataclass(frozen=True)
class InstanceMethod:
    """One instance method: ``fn(cell_prob, **params)`` with every parameter of ``defaults``."""

    name: str
    description: str
    defaults: dict[str, ParamValue]
    fn: Callable[..., np.ndarray]


# What each parameter may be (a name means the same in every method that has it).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "boundary_threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "beta": (lambda v: 0 < v < 1, "in (0, 1)"),
    "alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "sigma_seeds": (lambda v: 0 <= v <= 50, "in [0, 50] pixels"),
    "sigma_weights": (lambda v: 0 <= v <= 50, "in [0, 50] pixels"),
    "min_size": (lambda v: v >= 0, "at least 0 pixels"),
}
_SOLVERS = ("gaec", "kernighan-lin")
# our linkage names -> elf's (run_GASP); "single" and "mutex_watershed" take elf's fast paths
_LINKAGES = {
    "average": "average",
    "single": "single_linkage",
    "complete": "complete_linkage",
    "sum": "sum",
    "mutex_watershed": "mutex_watershed",
}
# multicut edge costs: each edge's alone ("none"), or scaled by its length relative to the longest
# ("length": elf's weighting scheme "all"), so a few pixels of boundary weigh less than a long one
_WEIGHTINGS = ("none", "length")
_CHOICES: dict[str, tuple[str, ...]] = {"solver": _SOLVERS, "linkage": tuple(_LINKAGES), "weighting": _WEIGHTINGS}

# the superpixels of multicut and gasp: elf's DEFAULT_WS_KWARGS (threshold on the membrane probability),
# but min_size 25, not 100: a cell under min_size cannot be a segment, and about 10% of the cell profiles
# of ISBI 2012's training labels are under 100 pixels (16 of 136 in slice 0), about 5% under 25
_SUPERPIXELS: dict[str, ParamValue] = {
    "boundary_threshold": 0.25,
    "sigma_seeds": 2.0,
    "sigma_weights": 2.0,
    "alpha": 0.9,
    "min_size": 25,
}


def _check_prob(cell_prob: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1], or a DataError naming what is wrong."""
    a = np.asarray(cell_prob)
    if a.ndim != 2:
        raise DataError(f"instance methods take one (H, W) cell probability map, got shape {a.shape}; pass one slice")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise DataError(f"the cell probability map has dtype {a.dtype}; expected floats in [0, 1]")
    a = a.astype(np.float32)
    if a.size and (not np.isfinite(a).all() or a.min() < -1e-6 or a.max() > 1 + 1e-6):
        raise DataError("the cell probability map holds NaN, infinite or values outside [0, 1]; pass probabilities")
    return np.clip(a, 0.0, 1.0)


def _watershed(cell_prob: np.ndarray) -> np.ndarray:
    """Today's ``predict --labels``: the cell probability flooded from its confident cores."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    cores, _ = ndimage.label(cell_prob > 0.9)
    return watershed(-cell_prob, cores, mask=cell_prob > 0.5).astype(np.uint32)


def _superpixel_graph(membrane: np.ndarray, boundary_threshold, sigma_seeds, sigma_weights, alpha, min_size):
    """(superpixels, RAG, mean membrane probability per edge, edge sizes), or None where no pixel is
    below ``boundary_threshold`` (a map of membrane only has no cell to find)."""
    from elf.segmentation.features import compute_boundary_mean_and_length, compute_rag
    from elf.segmentation.watershed import distance_transform_watershed

    if not (membrane <= boundary_threshold).any():
        return None
    superpixels, _ = distance_transform_watershed(
        membrane, boundary_threshold, sigma_seeds, sigma_weights=sigma_weights, min_size=min_size, alpha=alpha
    )
    superpixels = superpixels.astype(np.uint32)
    rag = compute_rag(superpixels, n_threads=_THREADS)
    features = compute_boundary_mean_and_length(rag, superpixels, membrane, n_threads=_THREADS)
    return superpixels, rag, features[:, 0], features[:, 1]


def _to_pixels(rag, superpixels: np.ndarray, node_labels: np.ndarray) -> np.ndarray:
    from elf.segmentation.features import project_node_labels_to_pixels

    labels = project_node_labels_to_pixels(rag, superpixels, np.asarray(node_labels), n_threads=_THREADS)
    labels = labels.astype(np.int64) + 1
    labels[superpixels == 0] = 0  # pixels no superpixel took stay background
    return labels


def _multicut(cell_prob: np.ndarray, *, beta: float, solver: str, weighting: str, **superpixels) -> np.ndarray:
    """Multicut of the superpixel graph: costs log((1-p)/p) + log((1-beta)/beta) of the mean membrane
    probability p of each edge (higher ``beta``: more cuts), with ``weighting`` "length" scaled by
    the edge's length over the longest edge's, solved by GAEC or Kernighan-Lin."""
    from elf.segmentation.multicut import compute_edge_costs, multicut_gaec, multicut_kernighan_lin

    problem = _superpixel_graph(1.0 - cell_prob, **superpixels)
    if problem is None:
        return np.zeros(cell_prob.shape, np.uint32)
    sp, rag, edge_probs, edge_sizes = problem
    if not len(edge_probs):  # one superpixel: nothing to cut
        return sp
    scheme = "all" if weighting == "length" else None
    costs = compute_edge_costs(edge_probs, edge_sizes=edge_sizes, beta=beta, weighting_scheme=scheme)
    solve = multicut_gaec if solver == "gaec" else multicut_kernighan_lin  # KL warm-starts from GAEC
    return _to_pixels(rag, sp, solve(rag, costs))


def _gasp(cell_prob: np.ndarray, *, beta: float, linkage: str, **superpixels) -> np.ndarray:
    """GASP on the same graph: signed weights (1 - p) - beta (elf's GaspFromAffinities weights),
    edges averaged by their lengths."""
    from elf.segmentation.gasp import run_GASP

    problem = _superpixel_graph(1.0 - cell_prob, **superpixels)
    if problem is None:
        return np.zeros(cell_prob.shape, np.uint32)
    sp, rag, edge_probs, edge_sizes = problem
    node_labels, _ = run_GASP(
        rag, (1.0 - edge_probs) - beta, linkage_criteria=_LINKAGES[linkage], edge_sizes=edge_sizes
    )
    return _to_pixels(rag, sp, node_labels)


def _objects(
    cell_prob: np.ndarray, *, threshold: float, sigma_seeds: float, sigma_weights: float, alpha: float, min_size: int
) -> np.ndarray:
    """Foreground objects: ``p > threshold``, seeds at the maxima of its (smoothed) distance
    transform, a seeded watershed inside the foreground that splits touching objects; objects
    under ``min_size`` pixels are dropped."""
    from elf.segmentation.watershed import distance_transform_watershed

    foreground = cell_prob > threshold
    if not foreground.any():
        return np.zeros(cell_prob.shape, np.uint32)
    # elf thresholds a boundary map (``input > threshold`` is boundary): the background probability
    labels, _ = distance_transform_watershed(
        1.0 - cell_prob, 1.0 - threshold, sigma_seeds, sigma_weights, min_size=0, alpha=alpha, mask=foreground
    )
    labels = labels.astype(np.int64)
    small = np.bincount(labels.ravel()) < min_size
    small[0] = True
    labels[small[labels]] = 0
    return labels


METHODS: dict[str, InstanceMethod] = {
    m.name: m
    for m in (
        InstanceMethod(
            "watershed",
            "today's predict --labels: watershed of the cell probability from its cores (p > 0.9) within p > 0.5",
            {},
            _watershed,
        ),
        InstanceMethod(
            "multicut",
            "distance-transform watershed superpixels, their adjacency graph, multicut of the mean membrane "
            "probability per edge with a boundary bias (elf, bioimage-cpp)",
            {**_SUPERPIXELS, "beta": 0.5, "solver": "gaec", "weighting": "none"},
            _multicut,
        ),
        InstanceMethod(
            "gasp",
            "the multicut's superpixel graph and edge evidence, partitioned by GASP agglomeration (elf, bioimage-cpp)",
            {**_SUPERPIXELS, "beta": 0.5, "linkage": "average"},
            _gasp,
        ),
        InstanceMethod(
            "objects",
            "foreground objects (class 1): threshold, distance-transform watershed splitting touching objects, "
            "minimum size (elf, bioimage-cpp)",
            {"threshold": 0.5, "sigma_seeds": 2.0, "sigma_weights": 2.0, "alpha": 0.9, "min_size": 100},
            _objects,
        ),
    )
}
DEFAULT_METHOD = "watershed"


def _method(name: str) -> InstanceMethod:
    if name not in METHODS:
        raise ConfigError(f"unknown instance method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _check_value(method: str, key: str, value: object, default: ParamValue) -> ParamValue:
    where = f"{method} parameter {key}={value!r}"
    if isinstance(default, str):
        choices = _CHOICES[key]
        if value not in choices:
            raise ConfigError(f"{where} is not one of {', '.join(choices)}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{where} is not a number; give {'an integer' if isinstance(default, int) else 'a number'}")
    number: int | float
    if isinstance(default, int):
        if not isinstance(value, numbers.Integral):
            raise ConfigError(f"{where} is not an integer; give a whole number of pixels")
        number = operator.index(value)
    else:
        number = float(value)
    valid, expected = _RANGES[key]
    if not valid(number):
        raise ConfigError(f"{where} is out of range; it must be {expected}")
    return number


def method_params(method: str, **params: object) -> dict[str, ParamValue]:
    """Every parameter of ``method``: its defaults updated by ``params``, checked (ConfigError for an
    unknown name, a wrong type or a value out of range). What a report records as the setting."""
    m = _method(method)
    unknown = sorted(set(params) - set(m.defaults))
    if unknown:
        known = ", ".join(m.defaults) if m.defaults else "none"
        raise ConfigError(f"instance method {method} has no parameter {', '.join(unknown)}; its parameters: {known}")
    return {k: _check_value(method, k, params.get(k, d), d) for k, d in m.defaults.items()}


def parse_params(method: str, items: list[str]) -> dict[str, ParamValue]:
    """``["beta=0.4", "solver=kernighan-lin"]`` (command-line text) -> checked, typed parameters."""
    m = _method(method)
    parsed: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key or not text:
            raise ConfigError(f"instance parameter {item!r} is not KEY=VALUE (for example beta=0.4)")
        default = m.defaults.get(key)
        try:
            parsed[key] = int(text) if isinstance(default, int) else float(text) if isinstance(default, float) else text
        except ValueError:
            kind = "a whole number" if isinstance(default, int) else "a number"
            raise ConfigError(f"{method} parameter {item!r}: {text!r} is not {kind}") from None
    return method_params(method, **parsed)


def instance_labels(cell_prob: np.ndarray, method: str = DEFAULT_METHOD, **params: object) -> np.ndarray:
    """(H, W) cell probability (1 = cell) -> (H, W) uint32 instances, 0 = background/boundary, ids 1..n.

    ``method`` is a key of ``METHODS``; ``params`` override its ``defaults`` (``method_params``).
    """
    settings = method_params(method, **params)
    prob = _check_prob(cell_prob)
    return relabel(METHODS[method].fn(prob, **settings))


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """(H, W) instances -> (H, W) uint8 one-pixel boundary map (1 = boundary) for the challenge's scoring.

    Background (0) is boundary. Of two 4-neighbours with different nonzero labels the left (or upper)
    one is boundary, so lines are one pixel wide and no two labels touch across the cell pixels
    (0); a labelled pixel beside background stays cell. The challenge scores ``1 - boundary_map``
    as a cell probability at any threshold in (0, 1): ``challenge.challenge_scores([1 - b], [mask],
    thresholds=(0.5,))``, no sweep.
    """
    a = np.asarray(labels)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"boundary_map takes an (H, W) integer instance map, got {a.dtype} of shape {a.shape}")
    edge = a == 0
    right = (a[:, :-1] != a[:, 1:]) & (a[:, :-1] != 0) & (a[:, 1:] != 0)
    down = (a[:-1] != a[1:]) & (a[:-1] != 0) & (a[1:] != 0)
    edge[:, :-1] |= right
    edge[:-1] |= down
    return edge.astype(np.uint8)


def _ious(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(true index, predicted index, IoU) of every overlapping pair of objects (indices from 0),
    and the numbers of true and predicted objects."""
    t, p = relabel(truth).ravel().astype(np.int64), relabel(pred).ravel().astype(np.int64)
    n_true, n_pred = int(t.max(initial=0)), int(p.max(initial=0))
    both = (t > 0) & (p > 0)
    pairs, inter = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
    ti, pi = pairs // (n_pred + 1), pairs % (n_pred + 1)
    size_t, size_p = np.bincount(t, minlength=n_true + 1), np.bincount(p, minlength=n_pred + 1)
    iou = inter / (size_t[ti] + size_p[pi] - inter)
    return ti - 1, pi - 1, iou, n_true, n_pred


def object_scores(pred: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> dict[str, float]:
    """Object-level scores of an instance map against true instances (both (H, W) integer, 0 = background).

    Objects are matched one to one (Hungarian, most total IoU) among pairs with IoU >= ``iou``.
    ``f1`` = 2 matched / (true + predicted objects), ``precision``, ``recall``; ``matched_iou`` the
    mean IoU of the matched pairs (0 without a match); ``foreground_iou`` the IoU of pred > 0 and
    truth > 0. With no object on either side every score is 1 (nothing to get wrong).
    """
    from scipy.optimize import linear_sum_assignment

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise DataError(f"instance maps {pred.shape} and {truth.shape} do not match: expected two (H, W) arrays")
    for name, a in (("predicted", pred), ("true", truth)):
        if not np.issubdtype(a.dtype, np.integer) or (a.size and a.min() < 0):
            raise DataError(f"the {name} instance map must hold non-negative integer ids, got {a.dtype}")
    if not 0 < iou <= 1:
        raise ConfigError(f"object_scores iou={iou} must be in (0, 1]")
    ti, pi, overlap, n_true, n_pred = _ious(pred, truth)
    keep = overlap >= iou
    ti, pi, overlap = ti[keep], pi[keep], overlap[keep]
    rows, cols = np.unique(ti), np.unique(pi)
    matrix = np.zeros((len(rows), len(cols)))
    matrix[np.searchsorted(rows, ti), np.searchsorted(cols, pi)] = overlap
    r, c = linear_sum_assignment(matrix, maximize=True)
    matched_ious = matrix[r, c][matrix[r, c] > 0]
    matched = len(matched_ious)
    fg_union = int(((pred > 0) | (truth > 0)).sum())
    return {
        "f1": 2 * matched / (n_true + n_pred) if n_true + n_pred else 1.0,
        "precision": matched / n_pred if n_pred else 1.0,
        "recall": matched / n_true if n_true else 1.0,
        "matched_iou": float(matched_ious.mean()) if matched else (1.0 if n_true + n_pred == 0 else 0.0),
        "foreground_iou": int(((pred > 0) & (truth > 0)).sum()) / fg_union if fg_union else 1.0,
        "true_objects": float(n_true),
        "predicted_objects": float(n_pred),
        "matched": float(matched),
    }

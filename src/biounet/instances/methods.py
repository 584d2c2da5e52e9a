"""Instance segmentation of a model's prediction: a registry of methods, the one-pixel boundary map
the ISBI 2012 challenge scores, and object-level scores.

A method reads one of two inputs (``InstanceMethod.inputs``). "boundary" methods (watershed,
multicut, gasp, objects) take the (H, W) probability that a pixel is inside a cell (class 1; the
membrane probability is ``1 - cell_prob``); "affinities" methods (mws, multicut-aff, gasp-aff) take
the (C, H, W) affinities of a model trained with ``--affinities`` (1 = the two pixels of an edge are
in the same object; one channel per offset, the nearest neighbours first), with their offsets. Every
method returns (H, W) uint32 labels, 0 where it leaves background or boundary, ids 1..n. The graph
methods run python-elf on its bioimage-cpp backend (instances.graphs): superpixels from a
distance-transform watershed of a boundary map, their region adjacency graph, the evidence on each
edge, then a partition of the graph. Defaults are those cv chose where a cv run records them, else
the literature's (the constants below say which). No PyTorch.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from biounet.core.errors import ConfigError, DataError
from biounet.data.affinities import Offsets, boundary_from_affinities, check_affinities, check_offsets
from biounet.instances.graphs import (
    LINKAGES,
    SOLVERS,
    WEIGHTINGS,
    affinity_edges,
    gasp_partition,
    membrane_edges,
    multicut_partition,
    superpixels,
)
from biounet.instances.labels import relabel
from biounet.instances.mws import mutex_watershed

ParamValue = float | int | str
INPUTS = ("boundary", "affinities")  # what a method reads: the cell probability, or the affinities


@dataclass(frozen=True)
class InstanceMethod:
    """One instance method. ``inputs`` "boundary": ``fn(cell_prob, **params)``; "affinities":
    ``fn(affinities, offsets, **params)``; with every parameter of ``defaults``."""

    name: str
    description: str
    defaults: dict[str, ParamValue]
    fn: Callable[..., np.ndarray]
    inputs: str = "boundary"


# What each parameter may be (a name means the same in every method that has it).
_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "boundary_threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
    "beta": (lambda v: 0 < v < 1, "in (0, 1)"),
    "alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "sigma_seeds": (lambda v: 0 <= v <= 50, "in [0, 50] pixels"),
    "sigma_weights": (lambda v: 0 <= v <= 50, "in [0, 50] pixels"),
    "min_size": (lambda v: v >= 0, "at least 0 pixels"),
    "stride": (lambda v: v >= 1, "at least 1 (1 keeps every repulsive edge)"),
    "attractive_bias": (lambda v: -1 <= v <= 1, "in [-1, 1]"),
}
_CHOICES: dict[str, tuple[str, ...]] = {"solver": SOLVERS, "linkage": tuple(LINKAGES), "weighting": WEIGHTINGS}

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
# The boundary biases cv chose on the recorded 5-fold run of the CPU recipe (docs/instances.md, "Five
# folds of ISBI 2012"; docs/results/cv-cpu-labels/cv-labels-{multicut,gasp}.json, 2026-11-29):
# multicut chose beta 0.4 on every fold; gasp 0.5 on folds 0, 1 and 3, 0.4 on folds 2 and 4.
_MULTICUT_BETA, _GASP_BETA = 0.4, 0.5
# The affinity methods' choices on the recorded 5-fold run of the affinity recipe (docs/instances.md, "Five
# folds of the affinity recipe"; docs/results/cv-aff-2400-labels/, 2026-12-05): the mutex watershed chose
# stride 2, attractive bias -0.1 and min size 100 on folds 1-4 (stride 1, bias 0, min size 100 on fold 0);
# multicut-aff and gasp-aff chose beta 0.5 on every fold.
_MWS = {"stride": 2, "attractive_bias": -0.1, "min_size": 100}
_AFFINITY_BETA = 0.5


def _check_prob(cell_prob: np.ndarray | None) -> np.ndarray:
    """(H, W) float32 in [0, 1], or a DataError naming what is wrong."""
    if cell_prob is None:
        raise DataError("this instance method reads the (H, W) cell probability map; pass it (class 1 of the model)")
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


def _multicut(cell_prob: np.ndarray, *, beta: float, solver: str, weighting: str, **superpixel_args) -> np.ndarray:
    """Multicut of the superpixel graph of the membrane probability, on each edge's mean membrane probability."""
    membrane = 1.0 - cell_prob
    sp = superpixels(membrane, **superpixel_args)
    if sp is None:
        return np.zeros(cell_prob.shape, np.uint32)
    return multicut_partition(sp, *membrane_edges(sp, membrane), beta=beta, solver=solver, weighting=weighting)


def _gasp(cell_prob: np.ndarray, *, beta: float, linkage: str, **superpixel_args) -> np.ndarray:
    """GASP on the multicut's graph and edge evidence."""
    membrane = 1.0 - cell_prob
    sp = superpixels(membrane, **superpixel_args)
    if sp is None:
        return np.zeros(cell_prob.shape, np.uint32)
    return gasp_partition(sp, *membrane_edges(sp, membrane), beta=beta, linkage=linkage)


def _mws(affinities: np.ndarray, offsets: Offsets, *, stride: int, attractive_bias: float, min_size: int) -> np.ndarray:
    """The mutex watershed of the affinities (instances.mws), repulsive edges kept every ``stride`` pixels."""
    return mutex_watershed(
        affinities, offsets, strides=(stride, stride), attractive_bias=attractive_bias, min_size=min_size
    )


def _multicut_aff(
    affinities: np.ndarray, offsets: Offsets, *, beta: float, solver: str, weighting: str, **superpixel_args
) -> np.ndarray:
    """Multicut of the superpixels of the affinities' boundary map, on each edge's mean affinity."""
    sp = superpixels(boundary_from_affinities(affinities, offsets), **superpixel_args)
    if sp is None:
        return np.zeros(affinities.shape[1:], np.uint32)
    edges = affinity_edges(sp, affinities, offsets)
    return multicut_partition(sp, *edges, beta=beta, solver=solver, weighting=weighting)


def _gasp_aff(affinities: np.ndarray, offsets: Offsets, *, beta: float, linkage: str, **superpixel_args) -> np.ndarray:
    """GASP on the multicut-aff's graph and edge evidence."""
    sp = superpixels(boundary_from_affinities(affinities, offsets), **superpixel_args)
    if sp is None:
        return np.zeros(affinities.shape[1:], np.uint32)
    return gasp_partition(sp, *affinity_edges(sp, affinities, offsets), beta=beta, linkage=linkage)


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
            {**_SUPERPIXELS, "beta": _MULTICUT_BETA, "solver": "gaec", "weighting": "none"},
            _multicut,
        ),
        InstanceMethod(
            "gasp",
            "the multicut's superpixel graph and edge evidence, partitioned by GASP agglomeration (elf, bioimage-cpp)",
            {**_SUPERPIXELS, "beta": _GASP_BETA, "linkage": "average"},
            _gasp,
        ),
        InstanceMethod(
            "objects",
            "foreground objects (class 1): threshold, distance-transform watershed splitting touching objects, "
            "minimum size (elf, bioimage-cpp)",
            {"threshold": 0.5, "sigma_seeds": 2.0, "sigma_weights": 2.0, "alpha": 0.9, "min_size": 100},
            _objects,
        ),
        InstanceMethod(
            "mws",
            "the mutex watershed of the affinities (Wolf et al. 2018): nearest-neighbour edges attract, "
            "long-range ones repel, no seeds, no threshold; small segments merged into a neighbour (bioimage-cpp)",
            dict(_MWS),
            _mws,
            "affinities",
        ),
        InstanceMethod(
            "multicut-aff",
            "multicut's superpixels and graph on the affinities' boundary map, each edge's evidence one minus "
            "the mean affinity of every pixel pair (every offset) linking its two superpixels (elf, bioimage-cpp)",
            {**_SUPERPIXELS, "beta": _AFFINITY_BETA, "solver": "gaec", "weighting": "none"},
            _multicut_aff,
            "affinities",
        ),
        InstanceMethod(
            "gasp-aff",
            "multicut-aff's superpixel graph and affinity evidence, partitioned by GASP agglomeration (elf, "
            "bioimage-cpp)",
            {**_SUPERPIXELS, "beta": _AFFINITY_BETA, "linkage": "average"},
            _gasp_aff,
            "affinities",
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


def parse_methods(text: str) -> list[str]:
    """'multicut,gasp' (command-line text) -> ['multicut', 'gasp'], each a known method, none twice."""
    out = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in out if t not in METHODS]
    if not out or unknown or len(set(out)) != len(out):
        raise ConfigError(
            f"--labels takes comma-separated instance methods, each once ({', '.join(METHODS)}), got {text!r}"
        )
    return out


def parse_method_params(methods: Sequence[str], items: list[str]) -> dict[str, dict[str, ParamValue]]:
    """``--label-param`` items for ``methods`` -> per method its checked parameters (:func:`parse_params`).
    An item is ``METHOD:KEY=VALUE`` (``multicut:beta=0.4``), or ``KEY=VALUE`` when there is one method."""
    given: dict[str, list[str]] = {m: [] for m in methods}
    for item in items:
        head, colon, rest = item.partition(":")
        if colon:
            if head.strip() not in given:
                raise ConfigError(
                    f"--label-param {item!r} names {head.strip()!r}, which is not a --labels method "
                    f"({', '.join(methods)}); write METHOD:KEY=VALUE for one of them"
                )
            given[head.strip()].append(rest)
        elif len(given) == 1:
            given[next(iter(given))].append(item)
        else:
            raise ConfigError(
                f"--label-param {item!r}: with several --labels methods, say whose parameter it is, "
                f"METHOD:{item} (e.g. {next(iter(given))}:{item})"
            )
    return {m: parse_params(m, given[m]) for m in methods}


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


def needs_affinities(method: str) -> bool:
    """Whether ``method`` reads the affinities rather than the cell probability."""
    return _method(method).inputs == "affinities"


def _no_affinities(methods: Sequence[str], why: str) -> ConfigError:
    boundary = ", ".join(name for name, m in METHODS.items() if m.inputs == "boundary")
    return ConfigError(
        f"instance method {', '.join(methods)} reads predicted affinities, but {why}; train a model with "
        f"--affinities mws12, or choose a method that reads the cell probability: {boundary}"
    )


def check_inputs(methods: Sequence[str], offsets: Sequence[Sequence[int]]) -> None:
    """A ConfigError naming the fix when a method of ``methods`` reads affinities and the model predicts
    none (``offsets`` empty): what a command checks before it segments anything."""
    need = [m for m in methods if needs_affinities(m)]
    if need and not len(offsets):
        raise _no_affinities(need, "the model predicts none (it was trained with --affinities none)")


def instance_labels(
    cell_prob: np.ndarray | None,
    method: str = DEFAULT_METHOD,
    *,
    affinities: np.ndarray | None = None,
    offsets: Sequence[Sequence[int]] = (),
    **params: object,
) -> np.ndarray:
    """(H, W) cell probability (1 = cell) -> (H, W) uint32 instances, 0 = background/boundary, ids 1..n.

    ``method`` is a key of ``METHODS``; ``params`` override its ``defaults`` (``method_params``). A
    method whose ``inputs`` are "affinities" reads ``affinities`` instead: (C, H, W) in [0, 1], 1 =
    same object, channel c for the edge (p, p + offsets[c]), the nearest neighbours first (then
    ``cell_prob`` may be None); without them it is a ConfigError naming the fix (:func:`check_inputs`).
    A "boundary" method ignores ``affinities``.
    """
    settings = method_params(method, **params)
    m = METHODS[method]
    if m.inputs == "affinities":
        if affinities is None:
            raise _no_affinities([method], "none were given (pass affinities= and offsets=)")
        offs = check_offsets(offsets)
        return relabel(m.fn(check_affinities(affinities, offs), offs, **settings))
    return relabel(m.fn(_check_prob(cell_prob), **settings))

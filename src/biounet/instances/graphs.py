"""The graph behind multicut and GASP: superpixels, their region adjacency graph, the evidence on
each edge, and the two partitions of that graph (python-elf on its bioimage-cpp backend; Beier et
al., Nature Methods 2017; Bailoni et al., GASP, 2022).

The superpixels come from a distance-transform watershed of a boundary map (the membrane
probability ``1 - cell_prob``, or :func:`biounet.data.affinities.boundary_from_affinities`). The
evidence on an edge is the probability ``p`` that its two superpixels belong to different cells:
the mean membrane probability along the edge (:func:`membrane_edges`), or one minus the mean
affinity of every pixel pair of every offset that links the two superpixels
(:func:`affinity_edges`). No PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# elf parallelises within one image; the volume path parallelises across slices and blocks instead
THREADS = 1
# our linkage names -> elf's (run_GASP); "single" and "mutex_watershed" take elf's fast paths
LINKAGES = {
    "average": "average",
    "single": "single_linkage",
    "complete": "complete_linkage",
    "sum": "sum",
    "mutex_watershed": "mutex_watershed",
}
SOLVERS = ("gaec", "kernighan-lin")
# multicut edge costs: each edge's alone ("none"), or scaled by its size relative to the largest
# ("length": elf's weighting scheme "all"), so a few pixels of boundary weigh less than a long one
WEIGHTINGS = ("none", "length")


def superpixels(
    boundary: np.ndarray,
    *,
    boundary_threshold: float,
    sigma_seeds: float,
    sigma_weights: float,
    alpha: float,
    min_size: int,
) -> np.ndarray | None:
    """(H, W) boundary map in [0, 1] -> (H, W) uint32 superpixels of elf's distance-transform watershed,
    or None where no pixel is at or below ``boundary_threshold`` (a map of boundary only has no cell)."""
    from elf.segmentation.watershed import distance_transform_watershed

    if not (boundary <= boundary_threshold).any():
        return None
    sp, _ = distance_transform_watershed(
        boundary, boundary_threshold, sigma_seeds, sigma_weights=sigma_weights, min_size=min_size, alpha=alpha
    )
    return sp.astype(np.uint32)


def membrane_edges(sp: np.ndarray, membrane: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """(RAG, p, sizes): per edge of the superpixels' graph the mean membrane probability along it and
    its length in pixels."""
    from elf.segmentation.features import compute_boundary_mean_and_length, compute_rag

    rag = compute_rag(sp, n_threads=THREADS)
    features = compute_boundary_mean_and_length(rag, sp, membrane, n_threads=THREADS)
    return rag, features[:, 0], features[:, 1]


def affinity_edges(
    sp: np.ndarray, affinities: np.ndarray, offsets: Sequence[Sequence[int]]
) -> tuple[Any, np.ndarray, np.ndarray]:
    """(RAG, p, sizes): per edge of the superpixels' graph ``p = 1 -`` the mean affinity of every pixel
    pair (p, p + offset), of every offset, whose two pixels lie in its two superpixels, and the number
    of such pairs (elf's ``compute_affinity_features``, columns mean and size).

    Every offset, not only the nearest neighbours: the long-range channels see across a faint gap in
    one membrane (a 9-pixel offset links the cells on both sides of it), which is the evidence a
    nearest-neighbour boundary map (the superpixels' own height map) does not hold. It is what elf's
    ``GaspFromAffinities`` accumulates over superpixels by default. An edge that no pair of any offset
    links (offsets without both nearest neighbours) has no evidence: p = 0.5.
    """
    from elf.segmentation.features import compute_affinity_features, compute_rag

    rag = compute_rag(sp, n_threads=THREADS)
    aff = np.ascontiguousarray(affinities, dtype=np.float32)
    features = compute_affinity_features(rag, sp, aff, [list(o) for o in offsets], n_threads=THREADS)
    sizes = features[:, -1]
    p = np.where(sizes > 0, 1.0 - np.nan_to_num(features[:, 0], nan=0.5), 0.5)
    return rag, np.clip(p, 0.0, 1.0), np.maximum(sizes, 1.0)


def to_pixels(rag: Any, sp: np.ndarray, node_labels: np.ndarray) -> np.ndarray:
    """The superpixels' node labels as an (H, W) label image, 0 where no superpixel took a pixel."""
    from elf.segmentation.features import project_node_labels_to_pixels

    labels = project_node_labels_to_pixels(rag, sp, np.asarray(node_labels), n_threads=THREADS)
    labels = labels.astype(np.int64) + 1
    labels[sp == 0] = 0
    return labels


def multicut_partition(
    sp: np.ndarray, rag: Any, p: np.ndarray, sizes: np.ndarray, *, beta: float, solver: str, weighting: str
) -> np.ndarray:
    """Multicut of the graph: costs log((1-p)/p) + log((1-beta)/beta) (higher ``beta``: more cuts),
    with ``weighting`` "length" scaled by each edge's size over the largest, solved by GAEC or
    Kernighan-Lin (which warm-starts from GAEC) -> (H, W) labels."""
    from elf.segmentation.multicut import compute_edge_costs, multicut_gaec, multicut_kernighan_lin

    if not len(p):  # one superpixel: nothing to cut
        return sp
    scheme = "all" if weighting == "length" else None
    costs = compute_edge_costs(p, edge_sizes=sizes, beta=beta, weighting_scheme=scheme)
    solve = multicut_gaec if solver == "gaec" else multicut_kernighan_lin
    return to_pixels(rag, sp, solve(rag, costs))


def gasp_partition(
    sp: np.ndarray, rag: Any, p: np.ndarray, sizes: np.ndarray, *, beta: float, linkage: str
) -> np.ndarray:
    """GASP on the graph: signed weights (1 - p) - beta (elf's GaspFromAffinities weights), merged
    clusters' weights combined by ``linkage`` with the edges' sizes -> (H, W) labels."""
    from elf.segmentation.gasp import run_GASP

    if not len(p):  # one superpixel: nothing to cut
        return sp
    node_labels, _ = run_GASP(rag, (1.0 - p) - beta, linkage_criteria=LINKAGES[linkage], edge_sizes=sizes)
    return to_pixels(rag, sp, node_labels)

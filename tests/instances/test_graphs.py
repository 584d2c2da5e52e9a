"""The graph the multicut and GASP methods share: the evidence on each edge, computed by hand."""

import numpy as np
import pytest

from biounet.instances.graphs import affinity_edges, gasp_partition, membrane_edges, multicut_partition, superpixels


def two_superpixels() -> np.ndarray:
    """(6, 8) superpixels 1 (columns 0-3) and 2 (columns 4-7): one edge, 6 pixels long."""
    sp = np.ones((6, 8), np.uint32)
    sp[:, 4:] = 2
    return sp


def test_affinity_evidence_averages_every_pair_of_every_offset_that_links_the_two_superpixels():
    sp = two_superpixels()
    offsets = [(0, -1), (0, -3)]
    aff = np.ones((2, 6, 8), np.float32)  # pairs inside one superpixel: not on the edge, never read
    aff[0][:, 4] = 0.8  # (0, -1) from column 4 to 3: the 6 nearest-neighbour pairs across
    aff[1][:, 4:7] = 0.2  # (0, -3) from columns 4-6 to 1-3: 18 long-range pairs across
    _, p, sizes = affinity_edges(sp, aff, offsets)
    assert sizes.tolist() == [24]
    assert p[0] == pytest.approx(1 - (6 * 0.8 + 18 * 0.2) / 24)
    # channel c at p is the edge (p, p + offsets[c]): the same values one column off link nothing
    shifted = np.ones((1, 6, 8), np.float32)
    shifted[0][:, 3] = 0.0
    assert affinity_edges(sp, shifted, [(0, -1)])[1][0] == pytest.approx(0.0)


def test_an_edge_no_pair_links_has_no_evidence():
    sp = two_superpixels()
    _, p, sizes = affinity_edges(sp, np.zeros((1, 6, 8), np.float32), [(-1, 0)])  # vertical pairs only
    assert p.tolist() == [0.5] and sizes.tolist() == [1.0]


def test_membrane_evidence_is_the_mean_along_the_edge():
    sp = two_superpixels()
    membrane = np.zeros((6, 8), np.float32)
    membrane[:, 3:5] = 0.9
    _, p, sizes = membrane_edges(sp, membrane)
    assert p[0] == pytest.approx(0.9) and sizes[0] == 6


def test_partitions_cut_strong_evidence_and_keep_one_superpixel_whole():
    sp = two_superpixels()
    for evidence, parts in ((0.9, 2), (0.1, 1)):
        rag, p, sizes = membrane_edges(sp, np.full((6, 8), evidence, np.float32))
        mc = multicut_partition(sp, rag, p, sizes, beta=0.5, solver="gaec", weighting="none")
        gasp = gasp_partition(sp, rag, p, sizes, beta=0.5, linkage="average")
        assert len(np.unique(mc)) == parts and len(np.unique(gasp)) == parts
    one = np.ones((6, 8), np.uint32)
    rag, p, sizes = membrane_edges(one, np.zeros((6, 8), np.float32))
    assert np.array_equal(multicut_partition(one, rag, p, sizes, beta=0.5, solver="gaec", weighting="length"), one)


def test_superpixels_need_a_pixel_below_the_threshold():
    assert (
        superpixels(
            np.ones((8, 8), np.float32),
            boundary_threshold=0.25,
            sigma_seeds=2.0,
            sigma_weights=2.0,
            alpha=0.9,
            min_size=0,
        )
        is None
    )

import numpy as np

from biounet.data.symmetry import DIHEDRAL, transform, untransform


def test_the_eight_symmetries_are_distinct_and_inverted():
    a = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    seen = set()
    for k, flip in DIHEDRAL:
        t = transform(a, k, flip)
        seen.add(t.tobytes() + bytes(t.shape))
        np.testing.assert_array_equal(untransform(t, k, flip), a)
    assert len(seen) == 8

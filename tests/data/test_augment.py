import numpy as np

from biounet.data import AugmentConfig, TileSampler
from biounet.data.augment import elastic_displacement, flip_rotate, warp
from biounet.data.readers import SegmentationData


def _stripes(size=96):
    """An image whose pixel values encode the mask: foreground where the image is bright."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = (((yy // 9) + (xx // 13)) % 2).astype(np.int16)
    image = np.where(mask == 1, 0.8, -0.8).astype(np.float32)[None]
    return SegmentationData([image], [mask], ["stripes"])


def test_elastic_field_is_smooth_with_the_papers_scale():
    rng = np.random.default_rng(0)
    fields = np.stack([elastic_displacement(rng, (128, 128), 10.0, 3) for _ in range(200)])
    corners = fields[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert abs(corners.std() - 10.0) < 1.0  # control points are N(0, 10 px)
    steps = np.abs(np.diff(fields, axis=-1)).max()
    assert steps < 3.0  # neighbouring pixels move nearly alike: a smooth field


def test_warp_with_zero_displacement_is_identity():
    img = np.random.default_rng(1).standard_normal((2, 20, 30)).astype(np.float32)
    coords = np.mgrid[0:20, 0:30].astype(np.float32)
    np.testing.assert_allclose(warp(img, coords, order=1), img, atol=1e-6)


def test_warp_matches_scipy_inside_and_mirrors_outside(monkeypatch):
    """OpenCV's remap samples as SciPy's map_coordinates (mode 'mirror'), also beyond the borders,
    and carries labels with the ignore value; the SciPy fallback for huge images agrees too."""
    from scipy import ndimage

    from biounet.data import augment

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:40, 0:50]
    # smooth, and different along rows and columns: OpenCV 4 rounds sample positions to 1/32 pixel
    img = (np.sin(yy / 3.0) + np.cos(xx / 5.0)).astype(np.float32)
    labels = rng.integers(-1, 3, (40, 50)).astype(np.int64)
    coords = np.mgrid[-8:48, -8:58].astype(np.float32) + elastic_displacement(rng, (56, 66), 4.0, 3)
    want_img = ndimage.map_coordinates(img, coords, order=1, mode="mirror", prefilter=False)
    want_lab = ndimage.map_coordinates(labels, coords, order=0, mode="mirror", prefilter=False)
    got_img, got_lab = warp(img, coords, order=1), warp(labels, coords, order=0)
    assert got_lab.dtype == labels.dtype and set(np.unique(got_lab)) <= {-1, 0, 1, 2}
    np.testing.assert_allclose(got_img, want_img, atol=0.02)
    assert np.mean(got_lab == want_lab) > 0.999  # ties exactly half-way may round either way
    integer = np.mgrid[-5:45, -7:57].astype(np.float32)  # whole pixels: exact, mirrored outside
    np.testing.assert_array_equal(
        warp(labels, integer, order=0), ndimage.map_coordinates(labels, integer, order=0, mode="mirror")
    )
    monkeypatch.setattr(augment, "CV_MAX_SIDE", 10)
    np.testing.assert_allclose(warp(img, coords, order=1), want_img, atol=1e-6)


def _dihedral(a):
    """The 8 symmetries of the square applied to the last two axes, each as an explicit array."""
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(-2, -1))
        out += [r, r[..., :, ::-1]]
    return out


def test_flip_rotate_moves_all_arrays_alike():
    """Every output is one of the 8 explicit flips/rotations of the input, image and mask get the
    same one, and over the seeds every one of the 8 occurs (a no-op or a missing flip fails)."""
    a = np.arange(36).reshape(6, 6)  # no symmetry: the 8 transforms are all different
    image, mask = np.stack([a, -a]).astype(np.float32), (a % 7).astype(np.int16)
    seen = set()
    for seed in range(64):
        x, y = flip_rotate([image, mask], np.random.default_rng(seed), AugmentConfig())
        which = [k for k, t in enumerate(_dihedral(image)) if np.array_equal(x, t)]
        assert len(which) == 1, seed
        np.testing.assert_array_equal(y, _dihedral(mask)[which[0]])
        seen.add(which[0])
    assert seen == set(range(8))
    only_rot = {
        next(
            k
            for k, t in enumerate(_dihedral(a))
            if np.array_equal(flip_rotate([a], np.random.default_rng(s), AugmentConfig(flip=False))[0], t)
        )
        for s in range(32)
    }
    assert only_rot == {0, 2, 4, 6}  # the 4 rotations, no mirror images
    only_flip = [flip_rotate([a], np.random.default_rng(s), AugmentConfig(rotate90=False))[0] for s in range(32)]
    flips = [a, a[::-1], a[:, ::-1], a[::-1, ::-1]]
    assert all(any(np.array_equal(o, f) for f in flips) for o in only_flip)
    assert all(any(np.array_equal(o, f) for o in only_flip) for f in flips)


def test_deformed_mask_stays_binary_and_moves_with_the_image():
    data = _stripes()
    aug = AugmentConfig(flip=False, rotate90=False, elastic=True, elastic_sigma=10, brightness=0, contrast=0)
    sampler = TileSampler(data, [0], in_tile=64, out_tile=40, augment=aug, seed=3)
    # the same samples without the deformation: the same crop positions (drawn first, from the same seed)
    plain = TileSampler(
        data, [0], in_tile=64, out_tile=40, augment=AugmentConfig(False, False, False, 10, 3, 0, 0), seed=3
    )
    moved = 0
    for k in range(20):
        image, mask, weight = sampler(k)
        plain_image, plain_mask, _ = plain(k)
        assert set(np.unique(mask)) <= {0, 1}
        inner = image[0, 12:52, 12:52]
        # wherever the image is clearly bright or dark, the mask agrees with it
        sure = np.abs(inner) > 0.6
        assert np.mean((inner[sure] > 0) == (mask[sure] == 1)) > 0.999
        moved += not np.array_equal(mask, plain_mask) and not np.array_equal(image, plain_image)
    assert moved == 20  # the deformation itself moved every sample, not just the random crop
    assert np.all(weight == 1.0)


def test_intensity_augmentation_changes_only_the_image():
    data = _stripes()
    plain = TileSampler(data, [0], 64, 40, AugmentConfig(False, False, False, brightness=0, contrast=0), seed=0)
    shifted = TileSampler(data, [0], 64, 40, AugmentConfig(False, False, False, brightness=0.3, contrast=0.3), seed=0)
    a, ma, _ = plain(5)
    b, mb, _ = shifted(5)
    assert np.array_equal(ma, mb) and not np.allclose(a, b)

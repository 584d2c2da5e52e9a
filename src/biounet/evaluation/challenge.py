"""The ISBI 2012 challenge's measures (pixel error, V_rand, V_info, and the split and merge parts
of V_rand and V_info), computed as the challenge's own Fiji code computes them.

Inputs: per slice an (H, W) cell probability (1 = cell) and an (H, W) mask of classes (1 = cell,
0 = membrane, IGNORE for pixels left out).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from biounet.core.errors import ConfigError
from biounet.data.readers import IGNORE
from biounet.evaluation.metrics import CHALLENGE_METRICS

SPLIT_MERGE = ("v_rand_split", "v_rand_merge", "v_info_split", "v_info_merge")

# --- The ISBI 2012 challenge's measures -------------------------------------------------------
# What follows recomputes, step by step, what the challenge's own code computes: Fiji's
# Trainable_Segmentation (package trainableSegmentation.metrics), as called by the ISBI 2012
# evaluation script with thresholds 0.0 to 1.0 in steps of 0.1 and per-slice averaging:
#   V_rand: RandError.getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true), per slice
#           getForegroundRestrictedRandAfterThinningStatsN2 -> getForegroundRestrictedRandIndexStatsN2
#           and ClassificationStatistics' F-score;
#   V_info: VariationOfInformation.getMaximalVInfoAfterThinning(0.0, 1.0, 0.1), per slice
#           foregroundRestrictedScoreAfterThinningN2 -> foregroundRestrictedFscore;
#   pixel error: 1 - PixelError.getPixelErrorMaximalFScore(0.0, 1.0, 0.1);
#   thinning: utils.WatershedTransform2D (4-connected), pixel order from utils.PixelRecord.
# (Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142.)


def challenge_thresholds(start: float = 0.0, stop: float = 1.0, step: float = 0.1) -> tuple[float, ...]:
    """The thresholds of the Java loop ``for (double th = start; th <= stop; th += step)``.

    The sum is accumulated in doubles, so 0.0..1.0 by 0.1 gives 11 values, among them
    0.30000000000000004, 0.7999999999999999 and, last, 0.9999999999999999 (not 1.0).
    """
    out, th = [], float(start)
    while th <= stop:
        out.append(th)
        th += step
    return tuple(out)


THRESHOLDS = challenge_thresholds()

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # 4-connectivity
# states of the flooding (WatershedTransform2D's constants; OUT marks the padding)
_MASK, _WSHED, _INQUEUE, _OUT = -2, 0, -3, -4


def truth_segmentation(cells: np.ndarray) -> np.ndarray:
    """The ground truth's segments: the 4-connected components of the cell pixels, numbered
    from 1; every other pixel (membrane, ignored) is 0 and is left out of the scores.

    Java: the label image binarised ``value > threshold`` (cell) and
    ``Utils.connectedComponents(..., 4)``. The ground truth is not thinned.
    """
    from scipy import ndimage

    return ndimage.label(np.asarray(cells, bool), _CROSS)[0]


def thinned_segmentation(cells: np.ndarray) -> np.ndarray:
    """The proposal's segments after the challenge's border thinning.

    cells: (H, W) bool, True where the proposal is cell (``probability > threshold``).
    Follows ``WatershedTransform2D(binary, 4).apply()`` on the inverted binary image (cell 0,
    boundary 255), the Vincent-Soille flooding, exactly:

    - level 0: the cells' 4-connected components become basins;
    - level 255: the boundary pixels with a cell among their 4 neighbours are queued in the
      Java pixel order (column by column: x outer, y inner), then a FIFO floods the boundary.
      A pixel taken from the queue inspects its neighbours in the order left, up, right, down:
      the first labelled one gives it its label, a later one with another label makes it a dam
      (0); a dam neighbour seen while it has no label makes it a dam, which a labelled neighbour
      seen later in the same inspection overrides; unlabelled boundary neighbours are queued.
      Dams do not stop the flood;
    - boundary regions that touch no cell become basins of their own (new minima at level 255).

    Returns int64 labels: basins numbered from 1 (numbers differ from the Java's; the scores
    do not depend on them), dams 0. Each dam pixel is later a segment of its own.
    About 20-70 ms per 512 x 512 slice (the flood is a Python loop over the boundary pixels).
    scikit-image's ``watershed(..., connectivity=1, watershed_line=True)`` is not used: it
    places the dam of an even-width membrane on either middle pixel depending on the position
    (the Java on the later one in its queue order) and resolves junctions differently.
    """
    cells = np.asarray(cells, bool)
    if cells.ndim != 2:
        raise ConfigError(f"thinned_segmentation needs a 2D image, got shape {cells.shape}")
    h, w = cells.shape
    flat, queue, n_basins = _flood_start(cells)
    _flood(flat, queue, w + 2)
    out = np.asarray(flat, np.int64).reshape(h + 2, w + 2)[1:-1, 1:-1].copy()
    _basins_of_unreached(out, n_basins)
    return out


def _flood_start(cells: np.ndarray) -> tuple[list[int], deque[int], int]:
    """Level 0: the states of the image padded by one pixel (basins from 1, boundary _MASK, padding
    _OUT) as a flat list (the flood reads single pixels, faster from a list), the boundary pixels
    next to a cell queued in the Java's pixel order (marked _INQUEUE), the number of basins."""
    from scipy import ndimage

    h, w = cells.shape
    row = w + 2
    basins, n_basins = ndimage.label(cells, _CROSS)
    labels = np.full((h + 2, row), _OUT, np.int64)
    labels[1:-1, 1:-1] = np.where(cells, basins, _MASK)
    seeds = ~cells & ndimage.binary_dilation(cells, _CROSS)
    xs, ys = np.nonzero(seeds.T)  # column by column, as the Java's pixel list
    start = ((ys + 1) * row + xs + 1).tolist()
    flat = labels.ravel().tolist()
    for i in start:
        flat[i] = _INQUEUE
    return flat, deque(start), n_basins


def _flood(flat: list[int], queue: deque[int], row: int) -> None:
    """Level 255, in place on ``flat`` (rows of ``row`` pixels): each pixel taken from the FIFO gets
    a basin's label or becomes a dam (``thinned_segmentation``); one loop, no call per pixel."""
    offsets = (-1, -row, 1, row)  # left, up, right, down (Neighborhood2DC4)
    while queue:
        p = queue.popleft()
        state, by_dam = _INQUEUE, False  # by_dam: the Java's `flag`
        for off in offsets:
            c = p + off
            other = flat[c]
            if other > 0:
                if state == _INQUEUE or (state == _WSHED and by_dam):
                    state = other
                elif state > 0 and state != other:
                    state, by_dam = _WSHED, False
            elif other == _WSHED:
                if state == _INQUEUE:
                    state, by_dam = _WSHED, True
            elif other == _MASK:
                flat[c] = _INQUEUE
                queue.append(c)
        flat[p] = state


def _basins_of_unreached(labels: np.ndarray, n_basins: int) -> None:
    """Boundary regions the flood never reached (they touch no cell) become basins of their own,
    numbered after the ``n_basins`` of the cells, in place: the Java's new minima at level 255."""
    from scipy import ndimage

    unreached = labels == _MASK
    if unreached.any():
        extra, _ = ndimage.label(unreached, _CROSS)
        labels[unreached] = extra[unreached] + n_basins


def _table(true_seg: np.ndarray, test_seg: np.ndarray):
    """(n, counts of (true i >= 1, test j >= 1) pairs, true sizes, test sizes restricted to the
    true foreground, number of singleton pixels): the Java's p_ij times n."""
    true_seg = np.asarray(true_seg).ravel()
    test_seg = np.asarray(test_seg).ravel()
    if true_seg.shape != test_seg.shape:
        raise ConfigError(f"segmentations of {true_seg.size} and {test_seg.size} pixels do not match")
    keep = true_seg != 0
    t, s = true_seg[keep].astype(np.int64), test_seg[keep].astype(np.int64)
    n = t.size
    singles = int((s == 0).sum())
    inside = s != 0
    width = int(s.max(initial=0)) + 1
    _, pair_counts = np.unique(t[inside] * width + s[inside], return_counts=True)
    _, a = np.unique(t, return_counts=True)
    _, b = np.unique(s[inside], return_counts=True)
    return n, pair_counts.astype(np.float64), a.astype(np.float64), b.astype(np.float64), singles


def _f_score(tp: float, fp: float, fn: float) -> float:
    """ClassificationStatistics: precision (1 without false positives), recall (1 without false
    negatives), F = 2 P R / (P + R), 0 when P + R is not positive (NaN included)."""
    precision = 1.0 if fp == 0 else (tp / (tp + fp) if tp + fp else float("nan"))
    recall = 1.0 if fn == 0 else (tp / (tp + fn) if tp + fn else float("nan"))
    if precision + recall > 0:
        return 2.0 * precision * recall / (precision + recall)
    return 0.0


def v_rand_score(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """The challenge's V_rand of one slice: foreground-restricted Rand F-score, N^2 normalisation.

    true_seg: ground-truth segments, 0 = left out (``truth_segmentation``); test_seg: proposal
    segments, 0 = a boundary pixel that is a segment of its own (``thinned_segmentation``).
    As ``RandError.getForegroundRestrictedRandIndexStatsN2``: with n the true foreground pixels
    and p_ij = n_ij / n over them, a_i = sum_j p_ij (the true segment sizes, singletons
    included), b_j = sum_{i>=1} p_ij (j >= 1), s = the singletons' share,
    sumA2 = sum a_i^2, sumB2 = sum b_j^2 + s/n, sumAB2 = sum_{i,j>=1} p_ij^2 + s/n;
    tp = n^2 sumAB2, fp = n^2 sumB2 - tp, fn = n^2 sumA2 - tp, and V_rand is the F-score of
    precision tp/(tp+fp) and recall tp/(tp+fn): 2 sumAB2 / (sumA2 + sumB2). Pairs count a
    pixel with itself (squares, not n(n-1)/2). With no true foreground pixel the Java gets
    NaNs and an F-score of 0; so does this.
    """
    counts = _rand_counts(true_seg, test_seg)
    return 0.0 if counts is None else _f_score(*counts)


def _shares(true_seg: np.ndarray, test_seg: np.ndarray):
    """(n, p_ij, a_i, b_j, singletons' share) of ``_table`` as shares of the n true foreground
    pixels; None without true foreground."""
    n, pairs, a, b, singles = _table(true_seg, test_seg)
    if n == 0:
        return None
    nf = float(n)
    return nf, pairs / nf, a / nf, b / nf, singles / nf


def _rand_counts(true_seg: np.ndarray, test_seg: np.ndarray) -> tuple[float, float, float] | None:
    """(tp, fp, fn) of ``v_rand_score``'s pairs; None without true foreground."""
    shares = _shares(true_seg, test_seg)
    if shares is None:
        return None
    nf, p, a, b, share = shares
    sum_a2 = float((a**2).sum())
    sum_b2 = float((b**2).sum()) + share / nf
    sum_ab2 = float((p**2).sum()) + share / nf
    n2 = nf * nf
    tp = n2 * sum_ab2
    return tp, n2 * sum_b2 - tp, n2 * sum_a2 - tp


def v_info_score(true_seg: np.ndarray, test_seg: np.ndarray) -> float:
    """The challenge's V_info of one slice: foreground-restricted information theoretic score.

    Arguments as ``v_rand_score``. As ``VariationOfInformation.foregroundRestrictedFscore``
    (natural logarithms): H(A) = -sum a_i log a_i, H(B) = -sum b_j log b_j + s log n,
    H(A,B) = -sum p_ij log p_ij + s log n (each singleton has probability 1/n);
    precision I/H(A) = (H(A) - H(A|B)) / H(A), recall I/H(B), V_info = 2 P R / (P + R).
    The Java's special cases are kept: H(A) = 0 sets P = 0, R = 1, then H(B) = 0 sets P = 1,
    R = 0 (so one true cell, or one proposal segment, scores 0, even when identical); P + R = 0
    gives NaN, as does a slice without true foreground. ``challenge_scores`` skips a threshold
    whose mean is NaN, as the Java's maximum does.
    """
    entropies = _entropies(true_seg, test_seg)
    if entropies is None:
        return float("nan")
    h_a, h_b, mutual = entropies
    precision = mutual / h_a if h_a != 0 else 0.0
    recall = mutual / h_b if h_b != 0 else 0.0
    if h_a == 0:
        precision, recall = 0.0, 1.0
    if h_b == 0:
        precision, recall = 1.0, 0.0
    if precision + recall == 0:
        return float("nan")
    return float(2.0 * precision * recall / (precision + recall))


def _entropies(true_seg: np.ndarray, test_seg: np.ndarray) -> tuple[float, float, float] | None:
    """(H(A), H(B), I(A; B)) of ``v_info_score``'s definition; None without true foreground."""
    shares = _shares(true_seg, test_seg)
    if shares is None:
        return None
    nf, p, a, b, share = shares

    def plogp(q):
        return float((q * np.log(q)).sum())

    sum_a = plogp(a)
    sum_b = plogp(b) - share * np.log(nf)
    sum_ab = plogp(p) - share * np.log(nf)
    h_a, h_b = -sum_a, -sum_b
    return h_a, h_b, h_a - (sum_b - sum_ab)  # I = H(A) - H(A|B)


def split_merge(true_seg: np.ndarray, test_seg: np.ndarray) -> dict[str, float]:
    """The split and merge parts of one slice's V_rand and V_info (Arganda-Carreras et al. 2015),
    arguments as ``v_rand_score``. A part is 1 when the proposal makes no error of its kind: the
    split part is the scores' recall (a true cell cut in pieces lowers it), the merge part their
    precision (two true cells in one segment lower it); V_rand and V_info are the harmonic means of
    their two parts (where the challenge's special cases do not apply: V_info of one true cell, or
    of a proposal of one segment, is 0 by the challenge's code, while here the part that cannot err
    is 1: a proposal of one segment splits nothing). NaN without true foreground."""
    rand, info = _rand_counts(true_seg, test_seg), _entropies(true_seg, test_seg)
    if rand is None or info is None:
        return dict.fromkeys(SPLIT_MERGE, float("nan"))
    tp, fp, fn = rand
    h_a, h_b, mutual = info
    return {
        "v_rand_split": tp / (tp + fn) if tp + fn else 1.0,
        "v_rand_merge": tp / (tp + fp) if tp + fp else 1.0,
        "v_info_split": mutual / h_b if h_b > 0 else 1.0,
        "v_info_merge": mutual / h_a if h_a > 0 else 1.0,
    }


def _pixel_counts(cell_prob: np.ndarray, mask: np.ndarray, threshold: float) -> tuple[float, float, float]:
    keep = mask != IGNORE
    pred = np.asarray(cell_prob, np.float32)[keep].astype(np.float64) > threshold
    true = mask[keep] == 1
    return float((pred & true).sum()), float((pred & ~true).sum()), float((~pred & true).sum())


def pixel_fscore(cell_prob: np.ndarray, mask: np.ndarray, threshold: float) -> float:
    """F-score of the cell pixels (probability > threshold) against the cell class of the mask
    (``PixelError.precisionRecallStats``); ignored pixels are left out."""
    return _f_score(*_pixel_counts(cell_prob, mask, threshold))


def first_best(means) -> tuple[float, int]:
    """(best, index) as the Java takes a maximum: start at 0 and the first index, take strictly
    larger values (ties keep the earlier one, NaN is never larger). How the challenge picks its
    threshold, and how ``cv --labels`` picks a threshold or parameters on the other folds."""
    best, index = 0.0, 0
    for k, value in enumerate(means):
        if value > best:
            best, index = value, k
    return best, index


def challenge_scores(
    cell_probs: list[np.ndarray],
    masks: list[np.ndarray],
    thresholds: tuple[float, ...] = THRESHOLDS,
    parts: bool = False,
) -> dict:
    """The challenge's measures of a stack, as its Fiji code computes them.

    cell_probs: per slice (H, W) cell probability (1 = cell, the labels' polarity), taken as
    float32 as ImageJ holds it; masks: per slice (H, W) classes (1 = cell, 0 = membrane,
    -1 = ignored, which the Java does not have: here left out like membrane).
    At every threshold th (default ``THRESHOLDS``, the Java's accumulated 0.0..1.0 by 0.1):
    a pixel is cell where ``probability > th`` (strict, compared in double precision); the
    ground truth is ``truth_segmentation(mask == 1)`` (not thinned, membrane left out), the
    proposal ``thinned_segmentation(probability > th)``; V_rand and V_info are computed per
    slice and averaged over the slices (macro average); the pixel F-score sums true/false
    positives and false negatives over the stack first (micro average, as
    ``PixelError.getPrecisionRecallStats``). Each measure then takes the best threshold for the
    whole stack (``first_best``).

    Returns ``pixel_error`` (1 - maximal pixel F-score), ``v_rand``, ``v_info``, each with
    ``*_threshold`` (the threshold rounded to 12 decimals: 1.0 stands for 0.9999999999999999),
    ``*_per_image`` (per-slice values at that threshold) and ``*_per_threshold`` (the stack's
    value at every threshold), and ``thresholds``. With ``parts``, also ``v_rand_split_per_image``
    and the other ``split_merge`` parts per slice, at V_rand's threshold.
    """
    _check_stack(cell_probs, masks)
    probs = [np.asarray(p, np.float32).astype(np.float64) for p in cell_probs]
    true_segs = [truth_segmentation(m == 1) for m in masks]
    rows, pixel_micro, kept = _per_threshold(probs, masks, true_segs, thresholds, parts)
    out: dict = {"thresholds": [round(t, 12) for t in thresholds]}
    for key, name in zip(("pixel", "v_rand", "v_info"), CHALLENGE_METRICS):
        means = pixel_micro if key == "pixel" else [float(sum(row) / len(row)) for row in rows[key]]
        best, k = first_best(means)
        if key == "pixel":
            out[name] = 1.0 - best
            out[f"{name}_per_image"] = [1.0 - v for v in rows[key][k]]
            out[f"{name}_per_threshold"] = [1.0 - v for v in means]
        else:
            out[name] = best
            out[f"{name}_per_image"] = rows[key][k]
            out[f"{name}_per_threshold"] = means
        out[f"{name}_threshold"] = round(thresholds[k], 12)
    if parts:
        at = kept[first_best(out["v_rand_per_threshold"])[1]]
        rows_parts = [split_merge(t, seg) for t, seg in zip(true_segs, at)]
        for part in SPLIT_MERGE:
            out[f"{part}_per_image"] = [r[part] for r in rows_parts]
    return out


def _check_stack(cell_probs: list[np.ndarray], masks: list[np.ndarray]) -> None:
    """A ConfigError unless every slice has one (H, W) probability map and one mask of its shape."""
    if len(cell_probs) != len(masks) or not masks:
        raise ConfigError(f"need equally many probability maps and masks, got {len(cell_probs)} and {len(masks)}")
    for p, m in zip(cell_probs, masks):
        if np.shape(p) != np.shape(m) or np.ndim(m) != 2:
            raise ConfigError(
                f"probability map {np.shape(p)} and mask {np.shape(m)} do not match: expected two (H, W) arrays"
            )


def _per_threshold(
    probs: list[np.ndarray],
    masks: list[np.ndarray],
    true_segs: list[np.ndarray],
    thresholds: tuple[float, ...],
    keep_proposals: bool,
) -> tuple[dict[str, list[list[float]]], list[float], list[list[np.ndarray]]]:
    """Per threshold: each slice's pixel F-score, V_rand and V_info, the stack's pixel F-score (micro
    average) and, with ``keep_proposals``, the thinned proposals (else the list stays empty)."""
    rows: dict[str, list[list[float]]] = {"pixel": [], "v_rand": [], "v_info": []}
    pixel_micro = []
    kept = []
    for th in thresholds:
        segs = [thinned_segmentation(p > th) for p in probs]
        if keep_proposals:
            kept.append(segs)
        counts = [_pixel_counts(p, m, th) for p, m in zip(probs, masks)]
        rows["pixel"].append([_f_score(*c) for c in counts])
        pixel_micro.append(_f_score(*np.sum(counts, axis=0).tolist()))
        rows["v_rand"].append([v_rand_score(t, s) for t, s in zip(true_segs, segs)])
        rows["v_info"].append([v_info_score(t, s) for t, s in zip(true_segs, segs)])
    return rows, pixel_micro, kept

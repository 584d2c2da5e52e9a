"""Label images' bookkeeping shared by the instance methods."""

from __future__ import annotations

import numpy as np


def relabel(labels: np.ndarray) -> np.ndarray:
    """uint32 labels with 0 kept and the other ids renumbered 1..n in order."""
    labels = np.asarray(labels)
    ids = np.unique(labels[labels != 0])
    out = np.zeros(labels.shape, np.uint32)
    inside = labels != 0
    out[inside] = np.searchsorted(ids, labels[inside]) + 1
    return out

"""Data: readers (folders; volume pairs, lazily), the k-fold split, augmentation, training tiles, synthetic images."""

from .augment import AugmentConfig
from .readers import IGNORE, SegmentationData, read_dataset, read_image_file, read_isbi, read_pairs
from .split import kfold_split
from .synthetic import synthetic_em_image, write_synthetic_dataset
from .tiles import TileDataset, TileSampler
from .volume_data import open_dataset, read_volumes
from .weights import border_weight_map, class_weights, weight_maps

__all__ = [
    "AugmentConfig",
    "IGNORE",
    "SegmentationData",
    "read_dataset",
    "open_dataset",
    "read_volumes",
    "read_image_file",
    "read_isbi",
    "read_pairs",
    "kfold_split",
    "synthetic_em_image",
    "write_synthetic_dataset",
    "TileDataset",
    "TileSampler",
    "border_weight_map",
    "class_weights",
    "weight_maps",
]

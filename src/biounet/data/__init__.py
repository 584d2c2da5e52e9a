"""Data: readers (files; folders; volume pairs, lazily), the k-fold split, augmentation, training tiles, synthetic
images."""

from biounet.data.augment import AugmentConfig
from biounet.data.folders import read_dataset, read_isbi, read_pairs
from biounet.data.readers import IGNORE, SegmentationData, painted_to_classes, read_image_file
from biounet.data.split import kfold_split
from biounet.data.synthetic import synthetic_em_image, write_synthetic_dataset
from biounet.data.tiles import TileDataset, TileSampler
from biounet.data.volume_data import open_dataset, read_volumes
from biounet.data.weights import border_weight_map, class_weights, weight_maps

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
    "painted_to_classes",
    "kfold_split",
    "synthetic_em_image",
    "write_synthetic_dataset",
    "TileDataset",
    "TileSampler",
    "border_weight_map",
    "class_weights",
    "weight_maps",
]

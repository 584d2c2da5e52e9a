"""Segmenting images and volumes with any predictor: the tile grid and blending (``tiling``), overlap-tile
inference with test-time augmentation (``inference``), ``predict``'s files (``predict``) and the table of
their cells (``objects``), volumes block by block, resumable (``blockwise``) and on a Dask cluster
(``cluster``).
"""

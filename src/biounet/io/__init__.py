"""Files: atomic writes and output checks (``fileio``), what an image file says about itself
(``metadata``: pixel size and unit, Zarr attributes), volumes read lazily (``volumes``: Zarr, OME-Zarr,
HDF5, TIFF) and the OME-Zarr output store (``omezarr``). No PyTorch.
"""

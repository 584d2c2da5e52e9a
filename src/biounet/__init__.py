"""biounet: the U-Net of Ronneberger et al. (2015) for 2D biomedical image segmentation."""

__version__ = "0.2.0"

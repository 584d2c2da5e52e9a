"""The network and its persistence: the U-Net as the paper draws it (``unet``), which sizes an
unpadded U-Net takes and returns (``geometry``, no torch), checkpoints saved atomically and loaded
safely (``checkpoint``) and the built-in weights (``pretrained``).
"""

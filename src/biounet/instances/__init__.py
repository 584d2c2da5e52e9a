"""Cells from a boundary map: the registry of instance methods (``methods``: watershed, multicut,
GASP, objects) and the overlays that draw them (``overlays``). No PyTorch.
"""

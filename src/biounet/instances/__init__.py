"""Cells from a model's prediction: the registry of instance methods (``methods``: watershed, multicut,
GASP and objects on the cell probability; mws, multicut-aff and gasp-aff on affinities), the graph they
share (``graphs``), the mutex watershed (``mws``), scoring (``scoring``), measurements (``measure``) and
the overlays that draw them (``overlays``). No PyTorch.
"""

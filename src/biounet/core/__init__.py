"""The ground floor, imported by every other: the user-facing errors (``errors``), the one training
configuration (``config.TrainConfig``, its YAML and schema migration), device and precision policy
(``device``), free memory and live processes without PyTorch (``system``). Imports nothing else of biounet.
"""

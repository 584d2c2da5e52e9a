"""Models leaving biounet: ONNX and torch.export files and the predictors that run them (``export``),
bioimage.io model packages (``bioimageio``: the package; ``bioimageio_rdf``: its rdf.yaml, written and
opened).
"""

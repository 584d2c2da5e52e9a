"""Scoring: the reported metrics (``metrics``), the ISBI 2012 challenge's measures (``challenge``),
a fold scored and ``biounet score`` (``evaluate``), parameters chosen on the other folds
(``selection``).
"""

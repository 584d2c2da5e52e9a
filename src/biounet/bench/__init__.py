"""``biounet bench``: the probes, each run in a fresh process (``probes``), and the table they make
(``runner``).
"""

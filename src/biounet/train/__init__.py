"""Training: the step and the loop (``engine``), a run's setup (``runsetup``), its log (``runlog``),
Adam and the schedule (``optim``), the losses (``losses``), micro-batches (``memory``), signals
(``stopping``), DDP (``distributed``), validation while training (``validation``) and k-fold
cross-validation (``crossval``).
"""

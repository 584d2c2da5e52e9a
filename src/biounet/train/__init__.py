"""Training: the step and the loop (``engine``), a run's setup (``runsetup``), its log (``runlog``),
Adam and the schedule (``optim``), the losses (``losses``), micro-batches (``memory``), signals
(``stopping``), what a caller in the same process hears and how it stops a run (``hooks``), DDP
(``distributed``), validation while training (``validation``), k-fold cross-validation (``crossval``) and
fine-tuning on painted labels held in memory (``finetune``).
"""

"""What a caller hears from a training run in its own process, and how it asks the run to stop: the napari
Fine-tune widget drives its progress bar, its previews and its Cancel button with these. Plain callables,
not a callback framework: the engine calls each at one named place (engine.py's loop), on the main
process only (``should_stop``'s answer is shared with the others under torchrun).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _nothing(*args: object) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class TrainHooks:
    """``on_step(step, steps, loss)`` after each optimizer step (steps: the run's last step); ``should_stop()``
    polled after each step: True stops the run as Ctrl-C does (last.pt saved, the checkpoints intact) but
    ``train`` returns its summary (``"stopped": True``) instead of raising; ``on_checkpoint(path)`` after
    each save of last.pt (the path of last.pt). They run in the training thread, between two steps: a slow
    hook slows the run, an exception from one ends it as any error does (the checkpoints written stay)."""

    on_step: Callable[[int, int, float], object] = _nothing  # what they return is not read
    should_stop: Callable[[], bool] = _never
    on_checkpoint: Callable[[Path], object] = _nothing

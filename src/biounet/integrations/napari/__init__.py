"""biounet's napari plugin (npe2 manifest ``napari.yaml``): the "Segment with biounet" widget
(:mod:`.widget`, running :mod:`.stack` in a worker thread), the "Fine-tune biounet" widget (:mod:`.finetune`,
running :mod:`biounet.train.finetune`), a reader of biounet's outputs
(:mod:`.reader`) and synthetic EM sample data (:mod:`.sample`). Importing this package imports
nothing from napari: napari loads each module when its contribution is first used."""

from pathlib import Path

MANIFEST = Path(__file__).resolve().parent / "napari.yaml"

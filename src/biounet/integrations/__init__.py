"""biounet inside other programs: the napari plugin (``napari``)."""

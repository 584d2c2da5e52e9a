"""biounet inside other programs: the napari plugin (``napari``) and the HTTP service with its web page
(``service``, `biounet serve`)."""

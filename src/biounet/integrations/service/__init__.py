"""``biounet serve``: a model behind an HTTP API and a web page.

:mod:`.command` (the command's options and ``run``) builds the web app of :mod:`.app` (the page, the docs
and the routes of :mod:`.api`) around a :class:`.server.Service`: uploads checked from their headers
(:mod:`.uploads`), jobs queued for one worker thread (:mod:`.jobs`) that runs biounet's own predict on
them (:mod:`.work`). Importing this package imports none of FastAPI, uvicorn or PyTorch."""

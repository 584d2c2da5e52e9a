"""Fixtures of the ``biounet serve`` tests: a tiny served model, and real servers on free loopback ports."""

import contextlib
import dataclasses
import time

import pytest
from support.service import Client, running, tiny_model

from biounet.integrations.service.app import create_app
from biounet.integrations.service.server import Settings


@pytest.fixture(scope="session")
def served_model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("served-model"))


def slowed(model, seconds: float):
    """``model`` with every forward pass taking ``seconds`` longer: jobs last long enough to be seen
    queued or running, and the queue to fill."""
    inner = model.predictor

    def predictor(batch):
        time.sleep(seconds)
        return inner(batch)

    predictor.device, predictor.precision = inner.device, inner.precision  # what /info reports
    return dataclasses.replace(model, predictor=predictor)


@pytest.fixture
def serve(served_model, tmp_path):
    """``serve(slow=0, **settings)``: a running server of the tiny model (every forward pass ``slow``
    seconds longer), its jobs' files under tmp_path; returns a :class:`Client` (with the token, if any).
    Every server stops at the end of the test."""
    with contextlib.ExitStack() as stack:

        def start(slow: float = 0.0, **settings) -> Client:
            model = slowed(served_model, slow) if slow else served_model
            app = create_app(model, Settings(work_dir=str(tmp_path), **settings))
            return Client(stack.enter_context(running(app)), settings.get("token"))

        yield start

"""Mutants of rtseg, as a pytest plugin: ``RTSEG_MUTANT=<name> python -m pytest -p tests.reliability.mutants ...``
runs the named tests with one deliberate bug patched in, during each test's call only (the session fixtures, their
exports and their guards, run on the real code). Each mutant stands for a failure the suite must see: if the tests
tests/reliability/test_mutants.py names still pass with it, they compare constants."""

from __future__ import annotations

import os

import numpy as np
import pytest


def pipeline_repeats_frame_0():
    """``rtseg run``'s pipeline hands out the labels of the first frame it segmented for every later frame."""
    from rtseg.video import pipeline

    real, first = pipeline.Result, {}

    class Repeated(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.labels = first.setdefault(self.labels.shape, self.labels)

    pipeline.Result = Repeated
    return lambda: setattr(pipeline, "Result", real)


def service_answers_the_previous_frame():
    """The service's answer to each request is its answer to the request before (the first is answered twice)."""
    from rtseg.serve.client import RemoteSegmenter

    real, previous = RemoteSegmenter.segment, {}

    def lagging(self, frame, *args, **kwargs):
        now = real(self, frame, *args, **kwargs)
        before = previous.get(id(self), now)
        previous[id(self)] = now
        return before

    RemoteSegmenter.segment = lagging
    return lambda: setattr(RemoteSegmenter, "segment", real)


def runner_ignores_its_input():
    """The ONNX Runtime runner computes on a fixed input (all zeros, a mid-grey frame) whatever it is given."""
    from rtseg.runtime.onnxruntime import OnnxRuntimeRunner

    real = OnnxRuntimeRunner.infer_impl

    def ignoring(self, x):
        return real(self, np.zeros_like(x))

    OnnxRuntimeRunner.infer_impl = ignoring
    return lambda: setattr(OnnxRuntimeRunner, "infer_impl", real)


def eval_scores_predictions_against_themselves():
    """``rtseg eval`` counts each prediction against itself instead of against the ground truth."""
    from rtseg.eval.metrics import ConfusionMatrix

    real = ConfusionMatrix.update

    def selfish(self, gt, pred, where=""):
        return real(self, pred, pred, where)

    ConfusionMatrix.update = selfish
    return lambda: setattr(ConfusionMatrix, "update", real)


MUTANTS = {f.__name__: f for f in (pipeline_repeats_frame_0, service_answers_the_previous_frame,
                                   runner_ignores_its_input, eval_scores_predictions_against_themselves)}


def _mutant_for(nodeid: str) -> str | None:
    """RTSEG_MUTANT=<name>: that mutant in every test's call; RTSEG_MUTANTS=<name>=<nodeid>,<nodeid>;<name>=...:
    each named test with its own mutant (several mutants checked in one run, the session fixtures built once)."""
    for part in filter(None, os.environ.get("RTSEG_MUTANTS", "").split(";")):
        name, _, nodeids = part.partition("=")
        if nodeid in nodeids.split(","):
            return name
    return os.environ.get("RTSEG_MUTANT") or None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    name = _mutant_for(item.nodeid)
    undo = MUTANTS[name]() if name else None
    try:
        yield
    finally:
        if undo is not None:
            undo()

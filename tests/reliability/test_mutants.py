"""Tests of the tests: each mutant of rtseg (tests/reliability/mutants.py) makes the tests named here fail.

The selected cases run those existing test functions in one pytest subprocess, each with its own mutant patched in
during its call (one subprocess, not one per mutant: torch's import, the session bundles' exports and Ray's start
are paid once). A test that still passes against a mutant would be comparing constants (as the shared bundles'
untrained weights once made every label comparison do); the same tests pass in the suite without it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import REPO

CATCHES = {
    "pipeline_repeats_frame_0": [
        "tests/video/test_pipeline.py::test_file_loses_no_frame_and_keeps_order",
        "tests/video/test_pipeline.py::test_file_on_two_threads_runs_two_frames_side_by_side_in_order",
        "tests/video/test_pipeline.py::test_vid_stride_and_image_folder",
    ],
    "service_answers_the_previous_frame": [
        "tests/serve/test_service.py::test_streams_are_batched_and_exact",
        "tests/serve/test_service.py::test_replica_killed_mid_run_loses_no_frame",
    ],
    "runner_ignores_its_input": [
        "tests/runtime/test_segmenter.py::test_same_labels_as_the_stages_done_by_hand",
        "tests/runtime/test_segmenter.py::test_torch_backend_gives_the_same_labels",
    ],
    "eval_scores_predictions_against_themselves": [
        "tests/eval/test_eval_cli.py::test_saved_masks_scored_in_rtseg_run_numbering",
    ],
}


def run_with_mutants(mutants: list[str]) -> tuple[int, str]:
    """Each mutant's tests, with that mutant patched into their calls, in one pytest subprocess."""
    env = {**os.environ, "RTSEG_MUTANTS": ";".join(f"{m}={','.join(CATCHES[m])}" for m in mutants)}
    env.pop("RTSEG_MUTANT", None)
    tests = [t for m in mutants for t in CATCHES[m]]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "tests.reliability.mutants", "-rf", *tests], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def mutant_run(request) -> tuple[int, str]:
    """One run for the mutants this session selected (``-m "not slow"`` leaves the service's out)."""
    mutants = [item.callspec.params["mutant"] for item in request.session.items
               if item.originalname == "test_each_mutant_fails_the_tests_that_should_see_it"]
    return run_with_mutants(list(dict.fromkeys(mutants)))


@pytest.mark.parametrize("mutant", [pytest.param(m, marks=pytest.mark.slow) if m.startswith("service") else m
                                    for m in CATCHES])
def test_each_mutant_fails_the_tests_that_should_see_it(mutant, mutant_run):
    code, out = mutant_run
    assert code == 1, out[-3000:]
    missed = [t for t in CATCHES[mutant] if f"FAILED {t}" not in out]
    assert not missed, f"{mutant} passed {missed}:\n{out[-3000:]}"

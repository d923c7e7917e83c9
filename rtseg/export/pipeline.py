"""``rtseg export`` as a function: a checkpoint (or an ONNX file) in, a verified bundle out.

Steps, each reused on a re-run when its inputs are unchanged (see :mod:`rtseg.export.steps`):

1. check everything the user gave (model, weights, sizes, output folder) before any slow work;
2. FP32 ONNX graph: exported from PyTorch, or the user's own graph imported;
3. FP16 mixed-precision graph, converted with the calibration frames (``--precision fp16``);
4. TensorRT engine from the FP16 (or FP32) graph, where TensorRT and a GPU exist;
5. verification of every artifact against PyTorch on scene-like frames, then ``rtseg.json``.

``rtseg.json`` is removed when the folder is prepared and written last, only when every gate passed; a step after a
failed gate does not run (no FP16 graph after a failed FP32 graph, no engine after any failure). An error or an
interrupt leaves no manifest, no temporary file, and no folder this run created and left empty.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RtsegError
from .base import ExportResult
from .options import ExportOptions


def run_export(opts: ExportOptions, say=None) -> ExportResult:
    """Build and verify a bundle; ``say(line)`` reports progress (default: print to stdout)."""
    say = say or (lambda line: print(line, flush=True))
    opts = opts.checked()  # every option read and range-checked, also when made in code
    if opts.calib is not None and not Path(opts.calib).exists():
        raise RtsegError(f"--calib {opts.calib}: no such file or folder; pass images, a folder of images or a video")
    if opts.require_engine:
        from ..runtime.tensorrt import tensorrt_missing_reason

        if (reason := tensorrt_missing_reason()) is not None:  # before any slow step
            raise RtsegError(f"--require-engine: {reason}")
    from .graph_sources import BringYourOwn, FromTorch

    if opts.onnx is not None:
        return BringYourOwn(opts, say).run()
    return FromTorch(opts, say).run()

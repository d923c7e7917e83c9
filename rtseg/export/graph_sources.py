"""Where an export's FP32 graph and its reference come from: a zoo model in PyTorch, or the user's own ONNX file.

Each is an :class:`rtseg.export.base.Export` that fills in the steps the base leaves open (``prepare``,
``fp32_graph``, ``make_reference``, ``verify_fp32``); the shared steps (FP16 graph, engine, verification, manifest)
stay in :mod:`rtseg.export.base`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..bundle import IMAGENET, Preprocessing
from ..errors import RtsegError
from ..files import sha256_file
from .base import Export
from .steps import hash_key, tool_versions
from .torch_onnx import INPUT_NAME, OPSET


class FromTorch(Export):
    reference_name = "pytorch"

    def prepare(self) -> None:
        from ..models import create_model, model_info
        from ..models.catalogue import CATALOGUE
        from ..models.registry import catalogue_checkpoint

        opts = self.opts
        info = model_info(opts.model)
        self.num_classes = int(opts.num_classes or info.default_num_classes)
        self.catalogue = None
        if opts.weights is not None and not Path(opts.weights).is_file():
            self.catalogue = catalogue_checkpoint(info, opts.weights, fetch=False)
            if self.catalogue is None:
                raise RtsegError(f"--weights {opts.weights}: no such file, nor a checkpoint of the catalogue ('rtseg"
                                 f" models --weights'); pass the .pth checkpoint of {info.name}")
        weights_sha = None
        if self.catalogue is None and opts.weights is not None:  # a file may still be one the catalogue knows
            weights_sha = sha256_file(opts.weights)
            self.catalogue = next((c for c in CATALOGUE.values() if c.sha256 == weights_sha), None)
        if opts.input_size is None and self.catalogue is not None and self.catalogue.model == info.name:
            opts.input_size = self.catalogue.input_size  # what it was trained on
        self.shapes = self._shapes_from_options()  # a wrong size now, not after a download
        if self.catalogue is not None and weights_sha is None:
            opts.weights = catalogue_checkpoint(info, opts.weights)  # fetched once into the cache, sha256 checked
            weights_sha = self.catalogue.sha256
        if opts.weights is None:
            import torch

            with torch.random.fork_rng():  # untrained weights, but the same ones on every run (step reuse)
                torch.manual_seed(0)
                self.model = create_model(info.name, num_classes=self.num_classes)
        else:
            self.model = create_model(info.name, num_classes=self.num_classes, checkpoint=opts.weights)
        for hw in [self.shapes.opt, self.shapes.min, self.shapes.max]:
            if hw is not None:
                self.model.check_input_size(*hw)
        if self.shapes.dynamic and not getattr(self.model, "dynamic_shapes_supported", True):
            raise RtsegError(f"{info.name} cannot export with dynamic sizes ({info.size_rule}: its pooling windows"
                             f" are fixed for one size); drop --dynamic and export one --input-size per size")
        if opts.weights is None:
            self.say(f"note: no --weights given; exporting {info.name} with untrained initial weights")
        self.model_name, self.family = info.name, info.family
        weights_sha = weights_sha or "untrained, torch seed 0"
        if self.catalogue is not None and self.catalogue.model == info.name:
            base_source = f"checkpoint {self.catalogue.name}"
            self.declared_classes, self.classes_declared_by = self.catalogue.classes, base_source
            base = self.catalogue.preprocessing
        else:
            self.declared_classes, self.classes_declared_by = info.classes, f"zoo entry {info.name}"
            base, base_source = info.preprocessing, f"zoo entry {info.name}"
        if (declared := self._checkpoint_pre()) is not None:
            base, base_source = declared, "checkpoint"
        self.pre = opts.preprocessing(base)
        self.pre_source = opts.preprocessing_source(base_source)
        self.input_name, self.output_kind = INPUT_NAME, opts.head
        self.output_name = "logits" if opts.head == "logits" else "labels"
        up = self.model.final_upsample
        self.upsample = {"mode": up.mode, "size": "input", "align_corners": bool(up.align_corners)}
        self.size_multiple = int(self.model.size_multiple)
        self.source_info = {"weights": str(opts.weights) if opts.weights else None,
                            "weights_sha256": weights_sha if opts.weights else None,
                            "output_stride": info.output_stride}
        if self.catalogue is not None:
            self.source_info["catalogue"] = self.catalogue.name
        self.onnx_key = hash_key("onnx", info.name, self.num_classes, weights_sha, self.shapes.as_dict(),
                                   opts.head, OPSET, opts.exporter, opts.max_batch, tool_versions())
        self.title = info.name

    def _checkpoint_pre(self) -> Preprocessing | None:
        """The preprocessing the loaded checkpoint declares (e.g. DIGITS' input shift), if any."""
        pre = getattr(self.model, "checkpoint_preprocessing", None)
        if not pre:
            return None
        self.say(f"note: input preprocessing from the checkpoint: {pre['channel_order']} pixels in"
                 f" 0..{pre['value_scale']:g}, mean {tuple(pre['mean'])}, std {tuple(pre['std'])}")
        return Preprocessing(tuple(pre["mean"]), tuple(pre["std"]), pre["channel_order"], float(pre["value_scale"]))

    def fp32_graph_and_reference(self, onnx_path: Path):
        # The reference first: the PyTorch model is then let go as soon as the graph is exported, and the ONNX-side
        # work (checker, onnxslim, every session after) runs without its weights in memory.
        reference = self.make_reference(onnx_path)
        self.fp32_graph(onnx_path)
        return reference

    def fp32_graph(self, path: Path) -> None:
        from .torch_onnx import export_torch

        t = time.perf_counter()
        if not self.opts.force and self.steps.reusable("onnx", self.onnx_key, [path]):
            self._onnx_note = "reused"
            self._release_model()
            return
        export_torch(self.model, path, self.shapes, self.opts.head, OPSET, self.opts.exporter,
                     release=self._release_model, max_batch=self.opts.max_batch)
        self.steps.finish("onnx", self.onnx_key, [path])
        self._onnx_note = f"{time.perf_counter() - t:.1f} s"

    def _release_model(self) -> None:
        from .allocator import release_memory

        self.model = None
        release_memory()

    def make_reference(self, onnx_path: Path):
        from .verify import build_reference, first_nonfinite_module, torch_runner

        model = self.model
        return build_reference(torch_runner(model, self.opts.head), self.frames, self.output_kind,
                               self.upsample, self.frame_sources, lambda x: first_nonfinite_module(model, x))

    def verify_fp32(self, onnx_path: Path) -> dict:
        from .allocator import release_memory
        from .ranges import RangeCollectingRunner

        # One pass over the frames serves the FP32 check and the FP16 step's ranges (the opt-size frames).
        runner = RangeCollectingRunner(onnx_path, self.shapes.opt) if self.opts.precision == "fp16" else None
        report = self.compare("onnx", onnx_path, self.opts.gates["onnx"], runner=runner)
        self.calib_ranges = runner.ranges if runner is not None else None
        if runner is not None:
            runner.close()  # its session goes before the FP16 step loads the graph again
            release_memory()
        report["note"] = self._onnx_note
        return report


class BringYourOwn(Export):
    reference_name = "onnx fp32 (no PyTorch model for --onnx)"

    def prepare(self) -> None:
        from ..models.file_kind import check_onnx_file
        from .torch_onnx import inspect_segmentation_graph
        from .verify import first_nonfinite_initializer

        opts = self.opts
        src = Path(opts.onnx)
        if not src.is_file():
            raise RtsegError(f"--onnx {src}: no such file; pass the path of a .onnx model")
        if opts.num_classes is None:
            raise RtsegError("--num-classes is required with --onnx")
        check_onnx_file(src)
        self.num_classes = int(opts.num_classes)
        io = inspect_segmentation_graph(src, self.num_classes, opts.output)
        if (name := first_nonfinite_initializer(src)) is not None:
            raise RtsegError(f"{src.name}: weight {name!r} holds NaN or infinity (a diverged training run?); export"
                             f" the model from a checkpoint before it diverged")
        if opts.input_size is None and io.static_hw is not None:
            opts.input_size = io.static_hw
        self.shapes = self._shapes_from_options()
        if io.static_hw is not None and (self.shapes.dynamic or io.static_hw != self.shapes.opt):
            raise RtsegError(f"{src.name} takes only {io.static_hw[0]}x{io.static_hw[1]} inputs (its input shape is"
                             f" fixed); pass --input-size {io.static_hw[0]}x{io.static_hw[1]} without --dynamic")
        self.io = io
        self.model_name, self.family = src.stem, "onnx"
        self.pre = opts.preprocessing(IMAGENET)
        self.pre_source = opts.preprocessing_source("ImageNet default (--onnx)")
        self.classes_declared_by = f"{src.name} (an --onnx graph)"
        self.input_name, self.output_name, self.output_kind = io.input_name, io.output_name, io.kind
        self.upsample = {"mode": "bilinear", "size": "input", "align_corners": bool(opts.align_corners)}
        self.size_multiple = 1
        self.src_sha = sha256_file(src)
        self.source_info = {"onnx": str(src), "onnx_sha256": self.src_sha}
        if io.pruned:
            self.source_info["output"] = io.output_name
        self.title = src.name

    def fp32_graph(self, path: Path) -> None:
        from .torch_onnx import add_batch_axis, import_onnx

        key = hash_key("onnx-import", self.src_sha, self.io.output_name, OPSET, self.opts.max_batch, self.tools)
        if self.opts.force or not self.steps.reusable("onnx", key, [path]):
            import_onnx(Path(self.opts.onnx), path, self.shapes.opt, output=self.io.output_name if self.io.pruned
                        else None)
            if self.opts.max_batch > 1:
                add_batch_axis(path, self.shapes.opt, self.opts.max_batch)
            self.steps.finish("onnx", key, [path])

    def make_reference(self, onnx_path: Path):
        from .verify import build_reference, first_nonfinite_node, onnxruntime_runner

        run = onnxruntime_runner(onnx_path)
        for size, x in self.frames.items():  # the graph must run at every size and give a per-pixel output
            out = run(x[:1])
            self._check_output(out, size)
        return build_reference(run, self.frames, self.output_kind, self.upsample, self.frame_sources,
                               lambda x: first_nonfinite_node(onnx_path, x))

    def _check_output(self, out: np.ndarray, size: tuple[int, int]) -> None:
        h, w = size
        name = Path(self.opts.onnx).name
        if self.output_kind == "labels":
            if out.shape[-2:] != (h, w):
                raise RtsegError(f"{name} is not a segmentation model: labels {out.shape} for a {h}x{w} input")
            return
        if out.shape[1] != self.num_classes:
            raise RtsegError(f"{name} outputs {out.shape[1]} channels but --num-classes is {self.num_classes}")
        oh, ow = out.shape[-2:]
        if (oh, ow) == (h, w):
            self.upsample = {"mode": "none", "size": "input", "align_corners": False}
        elif not (1 <= oh <= h and 1 <= ow <= w and abs(h / oh - w / ow) <= 0.25 * h / oh):
            raise RtsegError(f"{name} is not a segmentation model: a {h}x{w} input gives a {oh}x{ow} output,"
                             f" not a map at the input size or a fixed fraction of it")

    def verify_fp32(self, onnx_path: Path) -> dict:
        return {"skipped": "the FP32 graph is the reference (no PyTorch model for --onnx)", "passed": True}

"""The bundle folder's names and version: what every reader and writer of a bundle agrees on.

A bundle is a folder: ``rtseg.json`` (the manifest, written last and only when every verification gate passed),
the graphs it names with their sha256, and rtseg's bookkeeping files (dot-files, safe to delete). A folder whose
verification failed holds ``rtseg.failed.json`` instead of ``rtseg.json``. See docs/bundle-format.md.
"""

FORMAT_VERSION = 1  # bumped when a reader of the previous version would misread a new manifest
MANIFEST = "rtseg.json"
FAILED_MANIFEST = "rtseg.failed.json"
STEPS = ".rtseg-steps.json"  # finished export steps and their keys, for reuse on a re-run
VERIFIED_CACHE = ".rtseg-verified.json"  # artifact hashes already checked, keyed by file identity

ONNX_FILE = "model.onnx"
FP16_FILE = "model.fp16.onnx"
ENGINE_FILE = "model.engine"
INT8_FILE = "model.int8.onnx"  # U8S8 per-channel QDQ: ONNX Runtime's (and OpenVINO's) INT8 graph on the CPU
INT8_S8S8_FILE = "model.int8.s8s8.onnx"  # symmetric S8S8 QDQ: the form TensorRT builds INT8 engines from
#: artifact key in the manifest -> its file name
ARTIFACT_FILES = {"onnx": ONNX_FILE, "onnx_fp16": FP16_FILE, "engine": ENGINE_FILE, "onnx_int8": INT8_FILE,
                  "onnx_int8_s8s8": INT8_S8S8_FILE}

"""The table of cases (case -> expected) that test_table.py runs and docs/reliability.md lists.

Each case: an id, the argv (``{name}`` replaced by the paths of world.build_world), the exit code and words the
one ``rtseg: error:`` line must hold (``{name}`` replaced there too; code 0, words None: no error line)."""

from __future__ import annotations

from .world import BROKEN_BUNDLES

# what each broken bundle must be called, in every command that opens it
BUNDLE_WORDS = {
    "no-manifest": "not an rtseg bundle",
    "manifest-not-json": "rtseg.json",
    "manifest-empty": "rtseg.json",
    "manifest-a-list": "rtseg.json",
    "manifest-future": "newer rtseg",
    "manifest-old": "re-export",
    "model-missing": "model.onnx is missing",
    "model-truncated": "model.onnx changed",
    "model-flipped": "model.onnx changed",
    "model-a-folder": "model.onnx",
}
assert set(BUNDLE_WORDS) == set(BROKEN_BUNDLES)

# the commands that open a bundle, with what else they need to get that far
BUNDLE_COMMANDS = {
    "run": ["run", "{B}", "{clip}", "--no-save", "--quiet"],
    "run-masks": ["run", "{B}", "{clip}", "--save-masks", "{out}", "--quiet"],
    "run-stats": ["run", "{B}", "{clip}", "--stats", "{d}/stats.jsonl", "--no-save", "--quiet"],
    "serve": ["serve", "{B}", "--port", "{port}"],
    "info": ["info", "{B}"],
    "eval-parity": ["eval", "{B}", "--against", "torch", "--data", "{clip}", "--out", "{out}"],
    "bench": ["bench", "{B}", "--tiers", "a", "--max-frames", "2", "--warmup", "0", "--no-naive", "--out", "{out}"],
    "triton": ["triton", "{B}", "{out}"],
}
# a manifest that does not open at all fails the same in every command; artifacts are checked where they are used
# (serve's replicas check theirs; its cases here stop before Ray starts)
ARTIFACT_FREE = {"info", "triton", "serve"}  # info reports the artifact's state; triton copies what the manifest names

SOURCES = {  # bad sources of rtseg run, and what the line must say
    "missing": ("{missing}", "does not exist"),
    "empty": ("{empty}", "empty (0 bytes)"),
    "text": ("{text}", "cannot read"),
    "noise-png": ("{noise-png}", "not an image"),
    "emptydir": ("{emptydir}", "is empty"),
    "textdir": ("{textdir}", "readable image"),
    "fifo": ("{fifo}", "FIFO"),
    "blank": ("", "empty string"),
    "spaces": ("   ", "empty string"),
    "glob-nothing": ("{d}/nothing-*.png", "no files match"),
    "scheme": ("ftp://127.0.0.1/x.mp4", "unsupported source scheme"),
    "dev-null": ("/dev/null", "character device"),
    "dev-urandom": ("/dev/urandom", "character device"),
    "truncated-jpeg": ("{truncated-jpeg}", "truncated JPEG"),
}

EVAL_DATA_WORDS = {  # where eval says it its own way (it reads --data with OpenCV, as a labelled set or frames)
    "empty": "cannot open the video",
    "text": "cannot open the video",
    "noise-png": "cannot read the image",
    "emptydir": "holds no images",
    "textdir": "holds no images",
    "fifo": "a device, FIFO or socket",
    "blank": "pass --data DIR",
    "spaces": "does not exist",
    "glob-nothing": "does not exist",
    "scheme": "does not exist",
    "dev-null": "a device, FIFO or socket",
    "dev-urandom": "a device, FIFO or socket",
    "truncated-jpeg": "truncated JPEG",
}

RUN_FLAGS = {  # bad values of rtseg run's own flags (the source and bundle are fine)
    "alpha-high": (["--alpha", "1.5"], "--alpha"),
    "alpha-negative": (["--alpha", "-0.1"], "--alpha"),
    "max-frames-zero": (["--max-frames", "0"], "--max-frames"),
    "max-frames-negative": (["--max-frames", "-3"], "--max-frames"),
    "save-folder": (["--save", "{d}"], "is a folder"),
    "save-avi": (["--save", "{d}/o.avi"], ".mp4"),
    "save-xyz": (["--save", "{d}/o.xyz"], ".mp4"),
    "save-no-suffix": (["--save", "{d}/o"], ".mp4"),
    "save-over-source": (["--save", "{clip}"], "is the input"),
    "stats-over-source": (["--stats", "{clip}"], "is the input"),
    "masks-over-source": (["--save-masks", "{clip}"], "is the input"),
    "stats-is-save": (["--save", "{d}/x.mp4", "--stats", "{d}/x.mp4"], "both name"),
    "masks-is-stats": (["--save-masks", "{d}/m", "--stats", "{d}/m"], "both name"),
    "stats-folder": (["--stats", "{d}"], "is a folder"),
    "masks-a-file": (["--save-masks", "{image}"], "is a file"),
    "save-proc": (["--save", "/proc/o.mp4"], "/proc/o.mp4"),
    "save-missing-folder": (["--save", "{d}/no/such/o.mp4"], "does not exist"),
    "stats-missing-folder": (["--stats", "{d}/no/such/s.jsonl"], "does not exist"),
    "device-cuda": (["--device", "cuda"], "--device cpu"),
    "device-nonsense": (["--device", "gpu7"], "gpu7"),
    "backend-nonsense": (["--backend", "onnx"], "onnx"),
    "serve-busy-port": (["--serve", "{busy}"], "already in use"),
    "serve-busy-port-host": (["--serve", "127.0.0.1:{busy}"], "already in use"),
    "serve-bad-address": (["--serve", "nohost:x"], "expected PORT or HOST:PORT"),
    "serve-unknown-host": (["--serve", "no-such-host.invalid:8080"], "cannot listen"),
    "remote-and-scales": (["--remote", "http://127.0.0.1:9", "--scales", "1,0.5"], "--remote"),
}

OTHER = {  # other commands' mistakes: argv, words
    "info-missing": (["info", "{missing}"], "no bundle at"),
    "info-a-video": (["info", "{clip}"], "is a file, not a bundle"),
    "info-an-onnx": (["info", "{bundle}/model.onnx"], "is a file, not a bundle"),
    "info-its-manifest": (["info", "{bundle}/rtseg.json"], None),
    "eval-no-data": (["eval", "{bundle}", "--out", "{out}"], "--data"),
    "eval-missing-data": (["eval", "{bundle}", "--data", "{missing}", "--out", "{out}"], "is not a folder"),
    "eval-empty-data": (["eval", "{bundle}", "--data", "{emptydir}", "--out", "{out}"], "emptydir"),
    "eval-pred-missing": (["eval", "--pred", "{missing}", "--data", "{emptydir}", "--num-classes", "19", "--out",
                           "{out}"], "cannot tell the layout"),
    "eval-max-frames-zero": (["eval", "{bundle}", "--data", "{clip}", "--against", "torch", "--max-frames", "0",
                              "--out", "{out}"], "--max-frames"),
    "bench-size": (["bench", "{bundle}", "--size", "64by128", "--out", "{out}"], "expected HxW"),
    "bench-size-multiple": (["bench", "{bundle}", "--size", "64x100", "--out", "{out}"], "multiple of 32"),
    "bench-frames-zero": (["bench", "{bundle}", "--max-frames", "0", "--out", "{out}"], "at least 1"),
    "bench-source-missing": (["bench", "{bundle}", "--source", "{missing}", "--out", "{out}"], "does not exist"),
    "bench-device-cuda": (["bench", "{bundle}", "--device", "cuda", "--out", "{out}"], "--device cpu"),
    "bench-backend": (["bench", "{bundle}", "--backend", "onnx", "--out", "{out}"], "unknown backend"),
    "triton-out-a-file": (["triton", "{bundle}", "{image}"], "frame.png"),
    "triton-missing": (["triton", "{missing}", "{out}"], "no bundle at"),
    "serve-missing": (["serve", "{missing}"], "no bundle at"),
    "serve-a-video": (["serve", "{clip}"], "is a file, not a bundle"),
    "triton-an-onnx": (["triton", "{bundle}/model.onnx", "{out}"], "is a file, not a bundle"),
    "run-an-onnx": (["run", "{bundle}/model.onnx", "{clip}", "--no-save"], "is a file, not a bundle"),
    "run-busy-port-before-the-model": (["run", "{bundle-model-flipped}", "{clip}", "--serve", "{busy}"],
                                       "already in use"),
    "serve-port-zero": (["serve", "{bundle}", "--port", "0", "--address", "127.0.0.1:9"], "--port 0"),
    "serve-address": (["serve", "{bundle}", "--address", "nohostport"], "expected HOST:PORT"),
    # a broken copy is rebuilt where it is, not into the --out its manifest recorded (words: formatted too)
    "run-broken-copy-rebuilds-in-place": (["run", "{bundle-model-flipped}", "{clip}", "--no-save", "--quiet"],
                                          "--out {bundle-model-flipped} --force"),
    "bench-broken-copy-rebuilds-in-place": (["bench", "{bundle-model-missing}", "--tiers", "a", "--max-frames", "2",
                                             "--warmup", "0", "--no-naive", "--out", "{out}"],
                                            "--out {bundle-model-missing} --force"),
    "bench-an-onnx": (["bench", "{bundle}/model.onnx", "--out", "{out}"], "is a file, not a bundle"),
    "bench-missing": (["bench", "{missing}", "--out", "{out}"], "no bundle at"),
    "eval-an-onnx": (["eval", "{bundle}/model.onnx", "--against", "onnxruntime", "--data", "{clip}", "--out", "{out}"],
                     "is a file, not a bundle"),
    "eval-pred-colour-masks": (["eval", "--pred", "{colour-masks}", "--labels", "{id-labels}", "--num-classes", "19",
                                "--out", "{out}"], "looks like a colour mask"),
    "eval-data-two-layouts": (["eval", "{bundle}", "--data", "{two-layouts}", "--out", "{out}"],
                              "pick one with --layout voc or --layout pairs"),
    "eval-against-two-layouts": (["eval", "{bundle}", "--against", "onnxruntime", "--data", "{two-layouts}", "--out",
                                  "{out}"], "pick one with --layout voc or --layout pairs"),
    "bench-source-one-frame": (["bench", "{bundle}", "--source", "{image}", "--tiers", "c", "--no-naive",
                                "--max-frames", "2", "--warmup", "1", "--out", "{out}"], "tier (c)"),
}


def cases() -> list[tuple[str, list[str], int, str | None]]:
    out: list[tuple[str, list[str], int, str | None]] = []
    for command, argv in BUNDLE_COMMANDS.items():
        for broken, words in BUNDLE_WORDS.items():
            if command in ARTIFACT_FREE and broken.startswith("model-"):
                continue
            out.append((f"{command}/bundle-{broken}", [a.replace("{B}", "{bundle-" + broken + "}") for a in argv],
                        2, words))
    for name, (source, words) in SOURCES.items():
        out.append((f"run/source-{name}", ["run", "{bundle}", source, "--no-save", "--quiet"], 2, words))
        out.append((f"bench/source-{name}", ["bench", "{bundle}", "--source", source, "--tiers", "c", "--no-naive",
                                             "--max-frames", "2", "--warmup", "0", "--out", "{out}"], 2, words))
        out.append((f"eval/data-{name}", ["eval", "{bundle}", "--against", "torch", "--data", source, "--out",
                                          "{out}"], 2, EVAL_DATA_WORDS.get(name, words)))
    for name, (flags, words) in RUN_FLAGS.items():
        out.append((f"run/{name}", ["run", "{bundle}", "{clip}", "--quiet", *flags], 2, words))
    for name, (argv, words) in OTHER.items():
        out.append((name, argv, 2 if words else 0, words))
    return out

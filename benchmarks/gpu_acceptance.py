"""The whole GPU check as one command (issue #23, item 5); run it through ``bash benchmarks/gpu_acceptance.sh``.

Real mode (a machine with an NVIDIA GPU; at most 8 minutes; each step has its own time limit and the steps left when
the budget is spent are recorded as skipped, never dropped silently):
  1. every ``gpu``-marked test (pytest -m gpu), the two named below excepted
  2. the CUDA kernels against their CPU twins (tests/kernels/test_cuda_gpu.py)
  3. the resident path's no-sync test (tests/runtime/test_gpu.py::test_no_host_synchronisation_between_stages)
  4. Fast-SCNN and BiSeNetV1 exported at 1024x2048 (untrained weights: speed does not depend on them), then
     ``rtseg bench`` tiers a/b/c on ``--device cuda``: PyTorch (TorchRunner, CUDA FP16) and ONNX Runtime CUDA FP16
     where onnxruntime-gpu is installed
Writes benchmarks/results/gpu-acceptance-<host>.json (every step: command, exit code, seconds, output tail; the
bench rows) and gpu-acceptance-<host>.md, a summary table. Without a GPU it refuses to start (one line, exit 2).

Dry mode (``--dry``, run by CI on any machine): checks that everything the real mode names exists: each test file
and test id (pytest --collect-only), the ``gpu`` marker, each flag of ``rtseg export``/``rtseg bench`` it passes,
both models, the results folder. It runs nothing on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGET_S = 480
KERNEL_TESTS = "tests/kernels/test_cuda_gpu.py"
NO_SYNC_TEST = "tests/runtime/test_gpu.py::test_no_host_synchronisation_between_stages"
GPU_TEST_FILES = ["tests/runtime/test_gpu.py", "tests/kernels/test_cuda_gpu.py", "tests/kernels/test_device_gpu.py"]
MODELS = {"fast_scnn": "Fast-SCNN", "bisenetv1": "BiSeNetV1"}
SIZE = "1024x2048"
EXPORT_FLAGS = ["--model", "--input-size", "--precision", "--calib-frames", "--out"]
BENCH_FLAGS = ["--backend", "--device", "--precision", "--tiers", "--frame-size", "--frames", "--warmup",
               "--no-naive", "--out", "--batch"]
PY = [sys.executable]
PYTEST = PY + ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
RTSEG = PY + ["-m", "rtseg"]


def gpu_line() -> str | None:
    """The first GPU nvidia-smi lists, None where there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [s for s in out.stdout.splitlines() if s.startswith("GPU ")]
    return lines[0] if out.returncode == 0 and lines else None


def step(name: str, cmd: list[str], limit: float, deadline: float, log: list[dict], env=None) -> dict:
    """Run one step under min(limit, what is left of the budget); its record goes into ``log``."""
    left = deadline - time.monotonic()
    record = {"step": name, "command": " ".join(cmd)}
    if left < 10:
        record.update(rc=None, seconds=0.0, status="skipped: the 8-minute budget is spent", tail="")
        log.append(record)
        print(f"gpu_acceptance: {name}: skipped (budget spent)", flush=True)
        return record
    print(f"gpu_acceptance: {name} ...", flush=True)
    t = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=min(limit, left),
                             env={**os.environ, **(env or {})})
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = 124, f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {min(limit, left):.0f} s)"
    record.update(rc=rc, seconds=round(time.monotonic() - t, 1), status="ok" if rc == 0 else f"failed ({rc})",
                  tail=text[-3000:] if isinstance(text, str) else "")
    log.append(record)
    print(f"gpu_acceptance: {name}: {record['status']} in {record['seconds']} s", flush=True)
    return record


def real(out_dir: Path) -> int:
    deadline = time.monotonic() + BUDGET_S
    log: list[dict] = []
    step("gpu-marked tests", PYTEST + ["-m", "gpu", "tests", "--deselect", NO_SYNC_TEST, "--ignore", KERNEL_TESTS],
         200, deadline, log)
    step("CUDA kernels = CPU twins", PYTEST + [KERNEL_TESTS], 60, deadline, log)
    step("resident path: no host sync", PYTEST + [NO_SYNC_TEST], 60, deadline, log)
    probe = subprocess.run(PY + ["-c", "import onnxruntime as o; print('CUDAExecutionProvider' in"
                                       " o.get_available_providers())"], capture_output=True, text=True)
    backends = "torch,onnxruntime" if probe.stdout.strip() == "True" else "torch"
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtseg-gpu-acceptance-") as tmp:
        for model in MODELS:
            bundle = Path(tmp) / model
            made = step(f"export {model} {SIZE}", RTSEG + ["export", "--model", model, "--input-size", SIZE,
                                                           "--precision", "fp16", "--calib-frames", "2", "--out",
                                                           str(bundle)], 150, deadline, log)
            if made["rc"] != 0:
                continue
            bench_out = Path(tmp) / f"bench-{model}"
            ran = step(f"bench {model} {SIZE} ({backends})",
                       RTSEG + ["bench", str(bundle), "--backend", backends, "--device", "cuda", "--precision",
                                "fp16", "--tiers", "a,b,c", "--frame-size", SIZE, "--frames", "50", "--warmup", "10",
                                "--no-naive", "--out", str(bench_out)], 150, deadline, log)
            if ran["rc"] == 0 and (bench_out / "bench.json").is_file():
                doc = json.loads((bench_out / "bench.json").read_text())
                rows += [{k: v for k, v in r.items() if k != "samples_ms"} for r in doc.get("rows", [])]
    return write(out_dir, log, rows)


def write(out_dir: Path, log: list[dict], rows: list[dict]) -> int:
    sys.path.insert(0, str(ROOT))
    from rtseg.files import write_json, write_text_atomic
    from rtseg.machine import describe_machine, machine_stamp

    stamp = machine_stamp()
    host = socket.gethostname()
    failed = [s["step"] for s in log if s["status"] != "ok"]
    doc = {"machine": stamp, "gpu": gpu_line(), "budget_s": BUDGET_S, "steps": log, "bench_rows": rows,
           "passed": not failed}
    json_path, md_path = out_dir / f"gpu-acceptance-{host}.json", out_dir / f"gpu-acceptance-{host}.md"
    write_json(json_path, doc)
    lines = ["# GPU acceptance", "", f"machine: {describe_machine(stamp)}", f"GPU: {doc['gpu']}", "",
             "| step | result | seconds |", "|---|---|---:|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in log]
    if rows:
        keys = [k for k in ("bundle", "backend", "tier", "input_size", "median_ms", "p90_ms", "fps") if k in rows[0]]
        lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r.get(k)) for k in keys) + " |" for r in rows]
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    print(f"wrote {json_path}, {md_path}")
    if failed:
        print(f"gpu_acceptance: failed steps: {', '.join(failed)}", file=sys.stderr)
    return 0 if not failed else 1


def dry() -> int:
    """Check the wiring; one line per check, exit 1 if any fails."""
    problems = []

    def check(ok: bool, what: str) -> None:
        print(f"gpu_acceptance --dry: {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            problems.append(what)

    for path in GPU_TEST_FILES + [NO_SYNC_TEST.split("::")[0]]:
        check((ROOT / path).is_file(), f"test file {path}")
    collect = subprocess.run(PYTEST + ["--collect-only", "-m", "gpu", *GPU_TEST_FILES], cwd=ROOT,
                             capture_output=True, text=True)
    ids = [s for s in collect.stdout.splitlines() if "::" in s]
    check(collect.returncode == 0 and len(ids) >= 10, f"pytest collects the gpu-marked tests ({len(ids)} found)")
    check(any(s.startswith(NO_SYNC_TEST) for s in ids), f"the no-sync test {NO_SYNC_TEST} is gpu-marked")
    check(any(s.startswith(KERNEL_TESTS) for s in ids), f"the kernel tests {KERNEL_TESTS} are gpu-marked")
    for command, flags in (("export", EXPORT_FLAGS), ("bench", BENCH_FLAGS)):
        text = subprocess.run(RTSEG + [command, "--help"], cwd=ROOT, capture_output=True, text=True).stdout
        missing = [f for f in flags if f not in text]
        check(not missing, f"rtseg {command} --help has {' '.join(flags)}" + (f" (missing {missing})" if missing
                                                                             else ""))
    models = subprocess.run(RTSEG + ["models"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    check(all(m in models for m in MODELS), f"rtseg models lists {', '.join(MODELS)}")
    check(RESULTS.is_dir(), f"results folder {RESULTS.relative_to(ROOT)}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_acceptance.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="check that every step is wired; run nothing on a GPU")
    parser.add_argument("--out", default=str(RESULTS), help="where the JSON and Markdown go (default"
                                                           " benchmarks/results)")
    args = parser.parse_args(argv)
    if args.dry:
        return dry()
    if gpu_line() is None:
        print("rtseg: error: gpu_acceptance.sh needs an NVIDIA GPU and nvidia-smi lists none here; run it on a GPU"
              " machine, or pass --dry to check its wiring", file=sys.stderr)
        return 2
    return real(Path(args.out))


if __name__ == "__main__":
    sys.exit(main())

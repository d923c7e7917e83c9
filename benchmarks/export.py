"""Export cost: wall time and peak resident memory of every recipe in export/, plus FCN-ResNet50/101 at 1024x2048.

Each export runs as its own process under ``/usr/bin/time -v`` (memory measured from outside the process: the
kernel's peak RSS of the whole process), one at a time, with the reference fixtures' weights
(../shared/fixtures/reference, filled by the rule in tests/models/reference.py), the recipe's own sizes, and
``--force`` so nothing is reused. Recorded per export: wall and CPU seconds, peak RSS, the verification verdict
and agreements, and the load average before and after (the machine may be shared: CPU seconds are the figure that
load does not inflate). Results go to benchmarks/results/export-<host>.json after every export, with a machine
stamp, so a partial run keeps what it measured:

    python benchmarks/export.py                       # everything (about 10-20 min on 2 idle cores)
    python benchmarks/export.py --only bisenetv1 fcn_resnet50_tv@1024x2048
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine_stamp, results_path, write_results  # noqa: E402

EXTRA = [("fcn_resnet50_tv", "1024x2048"), ("fcn_resnet101_tv", "1024x2048")]  # recipe, --input-size override


def checkpoint(name: str, fixtures: Path, folder: Path) -> Path:
    from tests.models.reference import manifest, save_reference_checkpoint

    path = folder / f"{name}.pth"
    if not path.exists():
        save_reference_checkpoint(manifest(fixtures, name), path)
    return path


def run_one(recipe: Path, size: str | None, weights: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "rtseg.cli", "export", str(recipe), "--weights", str(weights), "--out", str(out),
           "--force"]
    if size:
        cmd += ["--input-size", size]
    load_before = os.getloadavg()[0]
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=ROOT, capture_output=True, text=True)
    stats = _time_v(proc.stderr)
    shown = ["rtseg", "export", f"export/{recipe.name}", "--weights", f"FIXTURE/{weights.name}", "--force"]
    row = {"command": " ".join(shown + (["--input-size", size] if size else [])), "returncode": proc.returncode,
           "wall_s": stats.get("wall_s"), "cpu_s": round(stats.get("user_s", 0) + stats.get("sys_s", 0), 1),
           "peak_rss_gb": round(stats.get("maxrss_kb", 0) * 1024 / 1e9, 2),
           "load_before": round(load_before, 1), "load_after": round(os.getloadavg()[0], 1)}
    manifest = out / "rtseg.json"
    if manifest.exists():
        ver = json.loads(manifest.read_text())["verification"]
        row["passed"] = ver.get("passed")
        row["agreement"] = {k: round(ver[k]["agreement"], 6) for k in ("onnx", "onnx_fp16", "engine")
                            if isinstance(ver.get(k), dict) and "agreement" in ver[k]}
    else:
        row["passed"] = False
        row["error"] = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
    return row


def _time_v(text: str) -> dict:
    """The figures of ``/usr/bin/time -v`` this benchmark records."""
    out = {}
    for key, pattern in (("user_s", r"User time \(seconds\): ([\d.]+)"), ("sys_s", r"System time \(seconds\): ([\d.]+)"),
                         ("maxrss_kb", r"Maximum resident set size \(kbytes\): (\d+)")):
        if m := re.search(pattern, text):
            out[key] = float(m.group(1))
    if m := re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text):
        seconds = 0.0
        for part in m.group(1).split(":"):
            seconds = seconds * 60 + float(part)
        out["wall_s"] = round(seconds, 1)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names: a recipe stem, or STEM@HxW for a size override")
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures" / "reference")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if not Path("/usr/bin/time").exists():
        sys.exit("benchmarks/export.py needs /usr/bin/time (apt-get install time)")
    jobs = [(p.stem, None) for p in sorted((ROOT / "export").glob("*.toml"))] + EXTRA
    if args.only:
        jobs = [(s.split("@")[0], s.split("@")[1] if "@" in s else None) for s in args.only]
    path = results_path("export", folder=args.results)
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["machine"] = machine_stamp()
    print(f"{'export':<32} {'wall s':>7} {'cpu s':>7} {'peak GB':>8}  verdict")
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-export-") as tmp:
        for stem, size in jobs:
            key = f"{stem}@{size}" if size else stem
            weights = checkpoint(stem, args.fixtures, Path(tmp))
            row = run_one(ROOT / "export" / f"{stem}.toml", size, weights, Path(tmp) / key)
            results["runs"][key] = row
            write_results(path, results)
            verdict = "passed" if row["passed"] else f"FAILED (rc {row['returncode']})"
            print(f"{key:<32} {row['wall_s']:>7} {row['cpu_s']:>7} {row['peak_rss_gb']:>8}  {verdict}", flush=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

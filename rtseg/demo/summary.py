"""The one summary ``rtseg demo`` prints: where the files are, how fast, how accurate."""

from __future__ import annotations


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def summary_lines(r: dict) -> list[str]:
    s = r["seconds"]
    steps = ", ".join(f"{k} {s[k]:.1f}" for k in ("render", "export", "run", "eval", "bench") if k in s)
    p = r["pipeline"]
    rt = r["runtime"]
    lines = [f"rtseg demo: done in {s['total']:.1f} s ({steps})",
             f"  overlay    {r['overlay']}  ({p['frames']} of {r['rendered_frames']} frames, H.264)",
             f"  masks      {r['masks']}/  ground truth {r['labels']}/  video {r['video']}",
             (f"  bundle     {r['bundle']}  run by {rt.get('backend')} on {rt.get('device')}"
              f" ({rt.get('provider') or '-'}, {rt.get('graph') or '-'})")]
    if r.get("serve"):
        lines.append(f"  browser    {r['serve']}")
    stages = p.get("stages", {})
    per_stage = ", ".join(f"{name} {_ms(d.get('p50'))}" for name, d in stages.items() if d.get("n"))
    work, queued = p.get("work") or {}, p.get("queued") or {}
    lines.append(f"  speed      end to end {p['fps']:.1f} fps over {p['frames']} frames; per frame (its stages) p50"
                 f" {_ms(work.get('p50'))} ms, p99 {_ms(work.get('p99'))} ms; queue wait p50 {_ms(queued.get('p50'))}"
                 f" ms (a file is read ahead of the model)")
    lines.append(f"             per stage p50 (ms): {per_stage}")
    for tier, b in (r.get("bench") or {}).items():
        if b.get("n"):
            lines.append(f"             bench {tier}: {b['fps']:.1f} fps, p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms")
    a = r["accuracy"]
    lines.append(f"  accuracy   mIoU {a['mean_iou']:.3f} on the video ({a['frames']} frames; pixel accuracy"
                 f" {a['pixel_accuracy']:.3f}, against the rendered ground truth)")
    lines.append("             " + "  ".join(f"{name} {iou:.3f}" for name, iou in a["class_iou"].items()))
    if a.get("predicted_only"):
        lines.append(f"             predicted but not in the video (IoU 0): {', '.join(a['predicted_only'])}")
    held = r.get("held_out")
    if held:
        lines.append(f"             held-out street frames (training script): mIoU {held['miou']:.3f} on"
                     f" {held['frames']} frames")
    lines.append(f"  details    {r['summary_file']}")
    return lines


def next_commands(r: dict) -> dict[str, str]:
    """The commands that take a user from the demo to their own data, with the demo's real paths (a test runs
    them as printed)."""
    import shlex

    from .run import INPUT_SIZE, MODEL, NUM_CLASSES

    q = shlex.quote
    bundle, video = q(r["bundle"]), q(r["video"])
    return {
        "your video": f"rtseg run {bundle} {video}",
        "a webcam": f"rtseg run {bundle} 0 --serve",
        "evaluate": f"rtseg eval {bundle} --pred {q(r['masks'])} --labels {q(r['labels'])}",
        "your model": (f"rtseg export --model {MODEL} --weights {q(r['weights'])} --num-classes {NUM_CLASSES}"
                       f" --input-size {INPUT_SIZE[0]}x{INPUT_SIZE[1]} --out runs/export/{MODEL}"),
    }


def next_steps(r: dict) -> list[str]:
    """What to type next: the same bundle on your own video or webcam, its masks scored, your own checkpoint."""
    c = next_commands(r)
    return ["",
            "next steps (copy a line; put your own video, image folder or rtsp:// URL in place of the street video):",
            f"  {c['your video']}",
            "      segments it and saves the overlay under runs/run/N/ (--visualize side, --serve, --save-masks DIR)",
            f"  {c['a webcam']}",
            "      your webcam live, in a browser at http://127.0.0.1:8080/",
            f"  {c['evaluate']}",
            "      scores the demo's masks against its labels, with class names (runs/eval/N/)",
            f"  {c['your model']}",
            "      your own checkpoint (--weights YOUR.pth, --num-classes) into a verified bundle to run the same way"]

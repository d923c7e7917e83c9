"""``rtseg bench``'s output read at a glance (issue #21): an aligned table on the terminal, Markdown with --md, the
plots written; outputs under runs/bench/N unless --out."""

from __future__ import annotations

from rtseg.cli import main


def _bench(bundle, *extra) -> list[str]:
    return ["bench", str(bundle), "--backend", "onnxruntime", "--device", "cpu", "--max-frames", "3", "--warmup",
            "1", "--frame-size", "64x96", "--tiers", "a,b", "--no-naive", "--threads", "1", *extra]


def test_aligned_table_markdown_with_md_and_runs_bench_n(small_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(_bench(small_bundle)) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    assert len(table) == 4 and "|" not in out.split("\n\n")[0]
    # every figure column ends where its header ends
    for name in ("p50", "p99", "fps"):
        end = table[0].index(name) + len(name)
        assert all(line[end - 1] != " " and (len(line) == end or line[end] == " ") for line in table[2:]), (name, table)
    assert (tmp_path / "runs" / "bench" / "1" / "latency.png").is_file()

    assert main(_bench(small_bundle, "--md")) == 0
    md = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert all(line.startswith("| ") and line.endswith(" |") for line in md[:1] + md[2:])
    assert md[1].startswith("|---") and md[1].endswith(":|")
    assert len({len(line) for line in md}) == 1  # padded: the Markdown source reads as a table too
    assert (tmp_path / "runs" / "bench" / "2" / "stages.png").is_file()

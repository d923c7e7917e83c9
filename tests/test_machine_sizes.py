"""rtseg.sizes (sizes, ranges and devices as users write them) and rtseg.machine (stamp, versions, memory)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rtseg import machine
from rtseg.errors import RtsegError
from rtseg.sizes import parse_device, parse_range, parse_size, read_range, read_size

from .conftest import REPO


# -- sizes --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, size", [("512x1024", (512, 1024)), (" 64 X 96 ", (64, 96)), ([32, 48], (32, 48)),
                                        ((1, 65536), (1, 65536))])
def test_read_size_reads_text_and_its_own_output(text, size):
    assert read_size(text, "--input-size") == size
    assert parse_size(text, "--input-size") == size


@pytest.mark.parametrize("text, message", [
    ("big", "--size 'big': expected HxW, e.g. 512x1024"),
    ("512x", "--size '512x': expected HxW, e.g. 512x1024"),
    ("-5x10", "--size '-5x10': expected HxW, e.g. 512x1024"),
    ("0x10", "--size '0x10': height and width must be between 1 and 65536"),
    ("100000x100000", "--size '100000x100000': height and width must be between 1 and 65536"),
])
def test_read_size_refuses_with_one_exact_line(text, message):
    for reader in (read_size, parse_size):
        with pytest.raises(RtsegError) as err:
            reader(text, "--size")
        assert str(err.value) == message


def test_read_range_reads_and_refuses():
    assert read_range("256x512:1024x2048", "--dynamic") == ((256, 512), (1024, 2048))
    assert parse_range("256x512:1024x2048") == ((256, 512), (1024, 2048))  # --dynamic is the default flag
    assert read_range([[256, 512], [256, 512]], "--dynamic") == ((256, 512), (256, 512))
    for text, message in (
            ("256x512", "--dynamic '256x512': expected MINHxMINW:MAXHxMAXW, e.g. 256x512:1024x2048"),
            ("1024x2048:256x512", "--dynamic '1024x2048:256x512': the minimum is larger than the maximum"),
            ("1x1:big", "--dynamic 'big': expected HxW, e.g. 512x1024")):
        with pytest.raises(RtsegError) as err:
            parse_range(text)
        assert str(err.value) == message


def test_parse_device():
    assert parse_device(None) is None and parse_device("auto") is None
    assert parse_device(" CPU ") == "cpu"
    assert parse_device("cuda") == parse_device("gpu") == "cuda:0"
    assert parse_device("cuda:1") == "cuda:1"
    with pytest.raises(RtsegError) as err:
        parse_device("tpu")
    assert str(err.value) == "unknown device 'tpu'; use cpu, cuda or cuda:N"


def test_the_commands_share_the_one_definition():
    from rtseg.export import cli, options
    from rtseg.runtime import base, select

    assert cli.parse_size is read_size and cli.parse_range is read_range
    assert options.read_size is read_size and options.read_range is read_range
    assert base.parse_device is parse_device and select.parse_device is parse_device


# -- machine ------------------------------------------------------------------------------------------------------
def test_package_versions_of_installed_and_missing_packages():
    from importlib.metadata import version

    found = machine.package_versions(["torch", "numpy", "onnxruntime", "no-such-package-rtseg"])
    assert found["torch"] == version("torch") and found["numpy"] == version("numpy")
    assert found["no-such-package-rtseg"] is None
    ort = pytest.importorskip("onnxruntime")
    assert found["onnxruntime"] == ort.__version__


def test_onnxruntime_is_found_under_any_of_its_distribution_names(monkeypatch):
    for dist in ("onnxruntime-gpu", "onnxruntime-openvino"):
        monkeypatch.setattr(machine, "_version", lambda d, dist=dist: "1.22.0" if d == dist else None)
        assert machine.package_versions(["onnxruntime"]) == {"onnxruntime": "1.22.0"}
    # a build not in the list: whichever distribution provides the onnxruntime module
    monkeypatch.setattr(machine, "_version", lambda d: "1.20.1" if d == "onnxruntime-rocm" else None)
    monkeypatch.setattr(machine, "_module_distributions", lambda: {"onnxruntime": ["onnxruntime-rocm"]})
    assert machine.package_versions(["onnxruntime", "onnx"]) == {"onnxruntime": "1.20.1", "onnx": None}


def test_machine_stamp_records_the_machine_and_versions():
    stamp = machine.machine_stamp()
    json.dumps(stamp)  # written into results as it is
    assert stamp["cpu"] and stamp["cores"] >= 1 and 1 <= stamp["cores_usable"] <= stamp["cores"]
    assert stamp["python"] == "{}.{}.{}".format(*sys.version_info[:3]) and stamp["host"] and stamp["date"]
    v = stamp["versions"]
    assert v["rtseg"] and v["python"] == stamp["python"] and v["numpy"]
    assert {"torch", "onnx", "onnxruntime", "nvidia-modelopt", "tensorrt", "opencv", "av", "ray"} <= set(v)
    assert isinstance(stamp["gpus"], list) and "RTSEG_NUM_THREADS" in stamp["threads"]
    line = machine.describe_machine(stamp)
    assert stamp["cpu"] in line and f"rtseg {v['rtseg']}" in line


def test_available_memory_is_bytes_and_what_limits_them():
    have, limited_by = machine.available_memory()
    assert 0 < have <= (machine.total_memory() or have)
    assert limited_by in ("free memory", "physical memory", "the cgroup's memory.max") or "RLIMIT" in limited_by


def test_the_estimate_sees_an_rlimit_and_the_size_check_the_machine():
    """Under a 2 GiB address-space limit the export's estimate sees the limit; the coarse size check (refusing
    typos such as 65536x65536) what the machine has."""
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY))
        from rtseg.errors import RtsegError
        from rtseg.export.memory import available_memory
        from rtseg.export.size_check import check_size_fits
        have, limited_by = available_memory()
        assert have < 2 << 30 and limited_by == "the process's RLIMIT_AS", (have, limited_by)
        have, limited_by = available_memory(limits=False)
        assert limited_by in ("free memory", "physical memory"), limited_by
        check_size_fits([((512, 1024), 4)], 19)  # fits the machine: no error here
        try:
            check_size_fits([((65536, 65536), 4)], 19)
        except RtsegError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("--input-size: verifying at 65536x65536 needs at least")
    assert "GiB available; pass a smaller size (or fewer --calib-frames)" in proc.stdout


def test_base_modules_import_nothing_heavy():
    code = textwrap.dedent("""
        import sys
        before = set(sys.modules)
        import rtseg.machine, rtseg.sizes
        rtseg.machine.machine_stamp()
        heavy = {m.split(".")[0] for m in set(sys.modules) - before} & {"torch", "onnx", "onnxruntime", "cv2", "ray"}
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

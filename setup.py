"""Build of the optional C++ extension ``rtseg._cpu_kernels`` (the CPU twins of the CUDA kernels).

Everything else about the package lives in pyproject.toml. The extension is optional: when no C++ compiler is
available the build prints a warning and the install goes on; ``rtseg.kernels`` then falls back to NumPy and says
so when first used. The CUDA sources in cpp_ext/ are not compiled here: NVRTC compiles them at run time, so they
are shipped inside the package (rtseg/kernels/cuda_src/) by ``build_py``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
CPP_EXT = "cpp_ext"
CUDA_SOURCES = ("kernels.cu", "rtseg_pixel.h")


def _extension() -> Extension:
    try:
        import pybind11

        include = [pybind11.get_include()]
    except ImportError:  # listed in build-system.requires; only a --no-build-isolation install can lack it
        include = []
    if sys.platform == "win32":
        compile_args = ["/O2", "/std:c++17", "/fp:precise"]
        link_args: list[str] = []
    else:
        # -ffp-contract=off: the arithmetic must not be fused behind our back (the shared header spells out each
        # fused multiply-add), so the CPU twin and the CUDA kernel round identically.
        compile_args = ["-O3", "-std=c++17", "-ffp-contract=off", "-fvisibility=hidden", "-pthread"]
        link_args = ["-pthread"]
    return Extension(
        "rtseg._cpu_kernels",
        sources=[f"{CPP_EXT}/cpu_kernels.cpp"],
        depends=[f"{CPP_EXT}/rtseg_pixel.h"],
        include_dirs=[*include, CPP_EXT],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        language="c++",
    )


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the C++ extension cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - a missing compiler shows up as several distutils error types
            self._warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)

    @staticmethod
    def _warn(exc: BaseException) -> None:
        line = "=" * 78
        print(
            f"\n{line}\nWARNING: could not build the optional C++ extension rtseg._cpu_kernels:\n  {exc}\n"
            "rtseg will use its slower NumPy fallback for the CPU kernels. Install a C++17 compiler\n"
            f"(e.g. apt-get install g++) and reinstall to get the fast CPU twins.\n{line}\n",
            file=sys.stderr,
        )


class BuildPyWithCudaSources(build_py):
    """Copy the NVRTC sources into the package so installed wheels can compile them at run time."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        dest = Path(self.build_lib) / "rtseg" / "kernels" / "cuda_src"
        dest.mkdir(parents=True, exist_ok=True)
        for name in CUDA_SOURCES:
            src = ROOT / CPP_EXT / name
            if src.is_file():
                shutil.copyfile(src, dest / name)


if os.environ.get("RTSEG_NO_CPU_EXTENSION"):
    ext_modules: list[Extension] = []
else:
    ext_modules = [_extension()]

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithCudaSources})

"""rtseg's CUDA layer: the driver, device memory, streams and events, run-time compilation, and what GPU this is.

A thin layer over cuda-python that the kernels (:mod:`rtseg.kernels`) and the runtime's GPU paths share, so that
pointers, streams and contexts pass freely between rtseg, PyTorch, ONNX Runtime and TensorRT:

- :mod:`rtseg.cuda.driver`: cuInit, device queries (count, name, architecture, driver version), the devices'
  primary contexts (:func:`~rtseg.cuda.driver.on_device`);
- :mod:`rtseg.cuda.memory`: device arrays (:class:`~rtseg.cuda.memory.DeviceArray`, ``__cuda_array_interface__``
  and PyTorch tensors read in place), device buffers, pinned host memory, asynchronous copies, stream-ordered
  scratch memory;
- :mod:`rtseg.cuda.streams`: streams, the stream a call runs on, events and GPU timings;
- :mod:`rtseg.cuda.nvrtc`: compile CUDA C++ at run time for the GPU at hand, with an on-disk cache (generic: the
  caller passes the sources and options);
- :mod:`rtseg.cuda.info`: the GPU's name and compute capability (:func:`~rtseg.cuda.info.gpu_info`).

Importing any of these needs no cuda-python: it is imported on first use, and a machine without it gets a
one-line error naming the extra to install. This layer sits on rtseg's base modules only (:mod:`rtseg.errors`,
:mod:`rtseg.files`); nothing here imports the kernels, models, runtime or export.
"""

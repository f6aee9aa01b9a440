"""Fixed-shape runs through ONNX Runtime's IO binding: nothing re-planned per request.

On a GPU, a session given a new input shape plans again (CUDA allocations, cuDNN
algorithm choice, a TensorRT engine) and copies its inputs and outputs through fresh
buffers each run. :class:`FixedShapeRunner` binds, once per batch size, an input and an
output buffer on the session's device (``OrtValue`` + ``io_binding``) and runs every
batch in one of a few fixed shapes: the tile side of the contract (padded to its size
multiple) and batch sizes in powers of two up to the largest batch, the last batch of
a request padded with zeros (the band means, after normalisation). Tiles of any other
side go through ``session.run`` as before.

The same code runs on the CPU provider (device ``cpu``), which is how it is tested
here; the service uses it only where it pays, on CUDA and TensorRT.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

#: The device an execution provider's buffers live on.
DEVICE_OF_PROVIDER = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda",
                      "CPUExecutionProvider": "cpu"}
#: Providers for which the service binds fixed shapes by default.
FIXED_SHAPE_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


def batch_sizes(largest: int) -> list[int]:
    """The fixed batch sizes: powers of two below ``largest``, and ``largest``."""
    sizes = [1 << k for k in range(largest.bit_length()) if 1 << k < largest]
    return [*sizes, largest]


class FixedShapeRunner:
    """Runs (N, bands, side, side) float32 batches in fixed, bound shapes."""

    def __init__(self, session: ort.InferenceSession, input_name: str, output_name: str,
                 num_bands: int, num_classes: int, side: int, largest_batch: int,
                 device: str | None = None, device_id: int = 0) -> None:
        """Bind lazily, one buffer pair per batch size (see the module docstring).

        Args:
            session: The session, on its provider.
            input_name: The graph's input.
            output_name: The graph's logits output (N, classes, side, side).
            num_bands: Input channels.
            num_classes: Output channels.
            side: The one tile side bound (the contract's, padded).
            largest_batch: The largest batch bound; larger requests run in chunks.
            device: ``cuda`` or ``cpu`` (default: that of the session's provider).
            device_id: The GPU.
        """
        self.session = session
        self.input_name, self.output_name = input_name, output_name
        self.num_bands, self.num_classes, self.side = num_bands, num_classes, side
        self.sizes = batch_sizes(largest_batch)
        self.device = device or DEVICE_OF_PROVIDER.get(session.get_providers()[0], "cpu")
        self.device_id = device_id
        self.bound: dict[int, tuple[Any, ort.OrtValue, ort.OrtValue]] = {}
        self._lock = threading.Lock()

    def accepts(self, x: NDArray[np.float32]) -> bool:
        """Whether ``x`` has the bound channel count and side."""
        return x.ndim == 4 and x.shape[1:] == (self.num_bands, self.side, self.side)

    def _binding(self, size: int) -> tuple[Any, ort.OrtValue, ort.OrtValue]:
        if size not in self.bound:
            x = ort.OrtValue.ortvalue_from_shape_and_type(
                (size, self.num_bands, self.side, self.side), np.float32, self.device,
                self.device_id)
            y = ort.OrtValue.ortvalue_from_shape_and_type(
                (size, self.num_classes, self.side, self.side), np.float32, self.device,
                self.device_id)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self.input_name, x)
            binding.bind_ortvalue_output(self.output_name, y)
            self.bound[size] = (binding, x, y)
        return self.bound[size]

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The logits of ``x`` (N, classes, side, side), batch by fixed-shape batch."""
        n = len(x)
        out = np.empty((n, self.num_classes, self.side, self.side), np.float32)
        largest = self.sizes[-1]
        for start in range(0, n, largest):
            chunk = np.ascontiguousarray(x[start:start + largest], np.float32)
            size = next(s for s in self.sizes if s >= len(chunk))
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros(
                    (size - len(chunk), *chunk.shape[1:]), np.float32)])
            with self._lock:
                binding, bound_x, bound_y = self._binding(size)
                bound_x.update_inplace(chunk)
                binding.synchronize_inputs()
                self.session.run_with_iobinding(binding)
                binding.synchronize_outputs()
                out[start:start + largest] = bound_y.numpy()[:len(x[start:start + largest])]
        return out

"""Checkpoint → ONNX + contract (parity through the served path), registries, int8."""

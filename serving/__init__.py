"""Serving floor of cacaomap: contract, ONNX Runtime inference, baseline. Never torch."""

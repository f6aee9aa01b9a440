"""The model at inference: contract, ONNX Runtime session, tiles, blended scenes.

- :mod:`~serving.inference.contract`: the model contract and model-folder checks.
- :mod:`~serving.inference.session`: ONNX Runtime sessions (TensorRT → CUDA → CPU).
- :mod:`~serving.inference.validity`: which input pixels are observed.
- :mod:`~serving.inference.tiles`: :class:`TileClassifier` and the tile checks.
- :mod:`~serving.inference.blending`: window placement and seam weights.
- :mod:`~serving.inference.scene`: whole scenes into Cloud Optimized GeoTIFF class maps.
- :mod:`~serving.inference.model_store`: where a served model comes from.
- :mod:`~serving.inference.many_scenes`: many scenes, resumable by content hash.
"""

"""Training data: TorchGeo datasets, the Lightning data module, spatially blocked splits."""

"""Training side of cacaomap: TorchGeo data, the Lightning task, the CLI and export."""

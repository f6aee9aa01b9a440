"""The Lightning task (segmentation), its figures, and the per-pixel baseline model."""

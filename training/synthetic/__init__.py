"""A synthetic Sentinel-2 landscape near Tocache, at a reference and a monitoring date."""

from training.synthetic.landscape import Landscape, LandscapeConfig
from training.synthetic.writer import generate_landscape

__all__ = ["Landscape", "LandscapeConfig", "generate_landscape"]

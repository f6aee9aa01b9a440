"""``make bench``: model, scene and service benchmarks and the performance page."""

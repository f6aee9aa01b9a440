"""``make bench``: model, scene and service benchmarks and the README's figures."""

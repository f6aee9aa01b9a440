"""Sentinel-1 radar beside Sentinel-2: units, acquisitions on a grid, statistics, stacks."""

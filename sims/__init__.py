"""Simulation and evaluation scripts that sit beside the package (not installed)."""

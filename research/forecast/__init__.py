"""Forecast studies: the checkpoint recipe, the held-out accuracy, the oracle bound, the
session filter."""

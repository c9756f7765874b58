"""Hostile-load soak of the live service (issue #29): ``python -m sims.soak`` / ``make soak``."""

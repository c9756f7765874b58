"""Tests of the studies (``make research-test``; not collected by ``make test``)."""

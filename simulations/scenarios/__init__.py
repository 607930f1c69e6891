"""Scenario files shipped with dgpu (``dgpu sim list``); a package so wheels carry them."""

"""Shared fixtures: each group lives in its own module, registered here."""

pytest_plugins = ["tests.fixtures_docker"]

"""The embedded-gateway fixture of the gateway tests, for the live commands' checks."""

from ..gateway.conftest import gw  # noqa: F401 - a fixture, found by pytest by name

"""Solidity sources, compiled artifacts and Python bindings of the governance contracts."""

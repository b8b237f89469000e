"""fedledger: federated learning whose rounds are governed by Ethereum smart contracts."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedledger")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]

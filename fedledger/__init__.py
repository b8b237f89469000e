"""fedledger: federated learning whose rounds are governed by Ethereum smart contracts."""

from importlib.metadata import PackageNotFoundError, version

from fedledger.numerics import pin_cpu_paths

# Before any numeric library computes, in this process and every one it starts (fedledger.numerics).
pin_cpu_paths()

try:
    __version__ = version("fedledger")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]

"""sliceai: keep 5G network slices inside their QoS guarantees with little wasted capacity.

The pure core (``sliceai.policy``, ``sliceai.solver``, ``sliceai.traffic``,
``sliceai.replay``) imports neither torch, grpc nor os-ken; adapters
(``sliceai.forecast``, ``sliceai.api``, ``sliceai.engine``,
``sliceai.controller``) wrap it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sliceai")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

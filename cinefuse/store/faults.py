"""The store's fault points are marked through the one hook, :mod:`cinefuse.faults` (its
docstring lists every point); this name stays for ``store/writer.py`` and ``store/manifest.py``."""

from cinefuse.faults import fault_point

__all__ = ["fault_point"]

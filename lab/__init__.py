"""lab: reproducible network-programming labs on real network namespaces."""

__version__ = "0.1.0"

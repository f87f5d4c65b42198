"""The version of tenant-trace."""

__version__ = "0.1.0"

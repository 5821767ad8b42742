"""ipywidgets panels for cleanup (`DeletePanel`) and copy (`CopyPanel`)."""

from .panels import CopyPanel, DeletePanel

__all__ = ["CopyPanel", "DeletePanel"]

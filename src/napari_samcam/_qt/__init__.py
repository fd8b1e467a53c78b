"""The Qt side of napari-samcam: the dock widget and the worker that runs its jobs."""

from ._widget import SamcamWidget

__all__ = ["SamcamWidget"]

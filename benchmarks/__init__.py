"""napari-samcam benchmarks: ``python -m benchmarks [--quick] [--json out.json]``."""

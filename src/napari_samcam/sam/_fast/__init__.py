"""The fast variant of the ``segment_anything`` backend, fenced off in one removable package.

Nothing outside :mod:`napari_samcam.sam` imports it but :func:`napari_samcam.sam.make_backend`
(and the benchmarks and equivalence tests that hold it to the plain backend).
"""

"""INT8 calibration: the class-covering calibration set and its manifest, activation ranges,
Q/DQ placement, block sensitivity with float fallback, and TensorRT calibration caches."""

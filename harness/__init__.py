"""sambench's library: the Unified SAM optimizer family, samplers, sharpness, workloads,
the trial runner, Ray Tune sweeps, the Parquet store and the ``sambench`` CLI."""

__version__ = "0.1.0"

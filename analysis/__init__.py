"""Analysis of sambench results: loading the Parquet store, aggregating over seeds,
seaborn figures and reports. It reads results only; it never trains."""

from analysis.load import load

__all__ = ["load"]

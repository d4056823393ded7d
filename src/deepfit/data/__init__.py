"""Data: IDX files (bundled, a directory, a download) or arrays → a prepared Dataset."""

from deepfit.data.prepare import Dataset, load_data, prepare

__all__ = ["Dataset", "load_data", "prepare"]

"""mmtt-bench: run, score and rank forgery localization + explanation models on MMTT."""

__version__ = "0.1.0"

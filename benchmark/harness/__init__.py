"""The harness: run a model over an MMTT split and stream a submission (see `run.py`)."""

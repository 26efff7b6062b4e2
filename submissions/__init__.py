"""The submission format, its validator and safe archive intake."""

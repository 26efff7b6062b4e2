"""Explanation baselines: prior, retrieval, region template and zero-shot vision-language models."""

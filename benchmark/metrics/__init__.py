"""Metrics: masks (IoU, F1, AUC), text (BLEU, METEOR, ROUGE-L, CIDEr-D), clues, statistics.

`METRIC_VERSION` is stamped on every score; bump it whenever a change to metric code can move a
number, so stored entries show which code produced them and `mmtt rescore` can bring them up.
"""

METRIC_VERSION = "1.0.0"

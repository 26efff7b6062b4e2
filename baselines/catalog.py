"""Every registered model, declared once (import paths only: nothing heavy is imported here)."""

from baselines.registry import Entry, register

# ForgeryTalker: the paper's model (baselines/forgerytalker)
register(Entry("forgerytalker", "both", "checkpoint", "baselines.forgerytalker.build:build_forgerytalker",
               "ForgeryTalker (InstructBLIP Flan-T5 + Face-ViT prompter + mask decoder) from converted official weights"))
register(Entry("forgerytalker-tiny", "both", "training", "baselines.forgerytalker.build:build_forgerytalker_tiny",
               "A small ForgeryTalker trained on the embedded mini-MMTT (not the paper's model)",
               trainer="baselines.forgerytalker.train:train_tiny"))

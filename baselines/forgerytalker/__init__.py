"""ForgeryTalker (the official code's "DFF"): forgery masks and explanations from one model.

InstructBLIP with a T5 language model, a Face-ViT region prompter, a BERT tag gate and a
SAM-style mask decoder, rebuilt from transformers blocks (see `model.py` for the data flow).

- `config.py`       every size in one dataclass (`ForgeryTalkerConfig.full()` / `.tiny()`)
- `model.py`        the model: training losses and `generate` (captions + masks in one pass)
- `prompter.py`     the Face-ViT multi-label prompter (with the released CNN branch)
- `gating.py`       kept labels -> instruction (word for word) / label string; the tag gate
- `mask_decoder.py` label tokens x image tokens -> two-way transformer -> mask logits
- `build.py`        checkpoint folders (safetensors + config + tokenizers) and the registry builders
- `convert.py`      the official LAVIS release -> a checkpoint folder (`mmtt convert forgerytalker`)
- `train.py`        prompter + joint training, DDP under torchrun (`mmtt train forgerytalker-tiny`)

Heavy imports (torch, transformers) happen in those modules, not here.
"""

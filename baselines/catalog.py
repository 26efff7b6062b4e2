"""Every registered model, declared once (import paths only: nothing heavy is imported here)."""

from baselines.registry import Entry, register

# ForgeryTalker: the paper's model (baselines/forgerytalker)
register(Entry("forgerytalker", "both", "checkpoint", "baselines.forgerytalker.build:build_forgerytalker",
               "ForgeryTalker (InstructBLIP Flan-T5 + Face-ViT prompter + mask decoder) from converted official weights"))
register(Entry("forgerytalker-tiny", "both", "training", "baselines.forgerytalker.build:build_forgerytalker_tiny",
               "A small ForgeryTalker trained on the embedded mini-MMTT (not the paper's model)",
               trainer="baselines.forgerytalker.train:train_tiny"))

# Trivial localizers (baselines/trivial.py): the floor
register(Entry("empty", "localizer", "nothing", "baselines.trivial:build_empty",
               "Predicts no forged pixel (all-zero mask)"))
register(Entry("full", "localizer", "nothing", "baselines.trivial:build_full",
               "Predicts every pixel forged (all-one mask)"))
register(Entry("centre-ellipse", "localizer", "nothing", "baselines.trivial:build_centre_ellipse",
               "Predicts a fixed ellipse over the inner face of an aligned crop"))

# Classical forensic localizers (baselines/forensic.py): no training
register(Entry("ela", "localizer", "nothing", "baselines.forensic:build_ela",
               "Error-level analysis: areas that change most under a JPEG re-save"))
register(Entry("noise-residual", "localizer", "nothing", "baselines.forensic:build_noise_residual",
               "Noise-residual inconsistency: areas whose median-filter residual energy departs from the image's"))
register(Entry("blur-inconsistency", "localizer", "nothing", "baselines.forensic:build_blur_inconsistency",
               "Blur/sharpness inconsistency: areas softer than the rest of the image"))

# Learned localizers: fine-tuned on the train split (`mmtt train MODEL --data DIR`)
register(Entry("unet", "localizer", "training", "baselines.unet:build_unet",
               "Compact U-Net (pure torch, pixel-unshuffle stem) trained on the train split",
               trainer="baselines.unet:train_unet"))
register(Entry("segformer", "localizer", "training", "baselines.segformer:build_segformer",
               "SegFormer (transformers) fine-tuned on the train split; from a local pretrained folder "
               "(--option pretrained=DIR) or a small random config",
               trainer="baselines.segformer:train_segformer"))

# Captioners (baselines/captioners)
register(Entry("prior", "captioner", "training", "baselines.captioners.prior:build_prior",
               "The train split's most representative explanation (TF-IDF medoid) for every image",
               trainer="baselines.captioners.prior:train_prior"))
register(Entry("retrieval", "captioner", "training", "baselines.captioners.retrieval:build_retrieval",
               "Nearest train images by a descriptor (a localizer's mask, default unet, + layout, gradients, "
               "colour, noise); consensus of their explanations", trainer="baselines.captioners.retrieval:train_retrieval",
               uses=("unet",)))
register(Entry("template", "both", "training", "baselines.captioners.template:build_template",
               "A localizer's mask (default unet) + an explanation naming the face parts it covers, "
               "in the words annotators use for them", trainer="baselines.captioners.template:train_template",
               uses=("unet",)))

# Zero-shot vision-language models (baselines/captioners/vlm.py): a local pretrained folder
register(Entry("blip", "captioner", "checkpoint", "baselines.captioners.vlm:build_blip",
               "BLIP image captioning (BlipForConditionalGeneration), zero-shot, from --checkpoint DIR"))
register(Entry("blip2", "captioner", "checkpoint", "baselines.captioners.vlm:build_blip2",
               "BLIP-2 (Blip2ForConditionalGeneration) asked why the face looks manipulated, zero-shot, from --checkpoint DIR"))
register(Entry("instructblip", "captioner", "checkpoint", "baselines.captioners.vlm:build_instructblip",
               "InstructBLIP (InstructBlipForConditionalGeneration) instructed to explain the manipulation, zero-shot, "
               "from --checkpoint DIR"))

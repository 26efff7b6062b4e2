"""MMTT caption metrics -- pycocoevalcap 1.2's numbers -- as a Hugging Face ``evaluate`` module.

    import evaluate
    metric = evaluate.load("/abs/path/to/benchmark/metrics/hf_mmtt_text")
    metric.compute(predictions=["the nose is blurred"], references=[["The nose looks blurred."]])

Works offline: it only needs the installed ``mmtt-bench`` package (``benchmark.metrics.text``),
pycocoevalcap 1.2 and Java.
"""

import datasets
import evaluate

from benchmark.metrics.text import TEXT_METRICS_VERSION, TextReference, score_captions

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based image description evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={CVPR}, year={2015}
}
@article{chen2015microsoft,
  title={Microsoft COCO Captions: Data Collection and Evaluation Server},
  author={Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta, Saurabh
          and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal={arXiv:1504.00325}, year={2015}
}
"""

_DESCRIPTION = f"""\
Caption metrics of the MMTT benchmark, numerically identical to pycocoevalcap 1.2 after its PTB
tokenization (Java): corpus BLEU-1..4 (closest reference length), ROUGE-L (beta 1.2), CIDEr-D
(document frequencies from the references of the scored predictions) and, on request, METEOR 1.5.
Raw pycocoevalcap scale (BLEU/ROUGE-L/METEOR in 0-1, CIDEr-D in 0-10). Version {TEXT_METRICS_VERSION}.
Note: a single prediction always gets CIDEr-D 0 (every n-gram has maximal document frequency).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, one generated caption per image.
    references: list of str or list of list of str, the reference caption(s) of each image.
    meteor: bool, also compute METEOR with the jar shipped in pycocoevalcap (slow start, ~5 s).
        Default False.
Returns:
    dict with bleu_1, bleu_2, bleu_3, bleu_4, rouge_l, cider (and meteor when requested).
Examples:
    >>> metric = evaluate.load("path/to/benchmark/metrics/hf_mmtt_text")
    >>> out = metric.compute(predictions=["a b c d"], references=["a b c d"])
    >>> round(out["bleu_4"], 6), out["cider"]
    (1.0, 0.0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class HfMmttText(evaluate.Metric):
    """BLEU-1..4, ROUGE-L, CIDEr-D (and optionally METEOR) as pycocoevalcap 1.2 computes them."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Value("string")}),
            ],
            reference_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, meteor=False):
        ids = [str(i) for i in range(len(predictions))]
        refs = {i: [r] if isinstance(r, str) else list(r) for i, r in zip(ids, references)}
        scores = score_captions(TextReference.build(refs), dict(zip(ids, predictions)), meteor=meteor)
        return dict(scores.metrics)

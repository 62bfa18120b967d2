"""Zero-shot prediction with the GloVe-CNN's word-vector head: faces are scored against label vectors,
including labels never trained on (FER+'s "contempt"), and measured against FER2013 and FER+ labels.

    python eval/zero_shot_words.py --model glove_cnn --labels ferplus8     # -> results/glove_cnn.zeroshot.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from fermm import cli
from fermm.evaluation import evaluator, metrics
from fermm.labels import FER7, FERPLUS8
from fermm.training.image import DEFAULT_DATASET


class WordVectorZeroShot:
    """Adapter: a word-vector CNN as a classifier over any label set that has word vectors."""

    def __init__(self, model, labels: Sequence[str], word_vectors: str | None = None):
        from fermm.models.wordvec import WordVectors, default_vectors, label_vectors

        if not getattr(model, "word_dim", 0):
            raise ValueError("this model has no word-vector head (train it with train/glove_cnn.py, not --base)")
        table = WordVectors.load(word_vectors) if word_vectors else default_vectors()
        self.model, self.labels = model, tuple(labels)
        self.vectors = torch.from_numpy(label_vectors(self.labels, table))

    @torch.inference_mode()
    def predict_proba(self, faces, tta: str = "none", batch_size: int = 128) -> torch.Tensor:
        from fermm.transforms import tta_views

        self.model.eval()
        out = []
        for i in range(0, len(faces), batch_size):
            x = self.model.preprocess(faces[i:i + batch_size])
            views = [self.model.zero_shot_logits(v, self.vectors).float().softmax(-1) for v in tta_views(x, tta)]
            out.append(torch.stack(views).mean(0))
        return torch.cat(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="glove_cnn")
    p.add_argument("--labels", default="ferplus8", choices=("fer7", "ferplus8"))
    p.add_argument("--word_vectors", default=None)
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--split", default="test")
    p.add_argument("--output_dir", default="results")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.models import load_model

    args = parse_args(argv)
    command = metrics.command_line("eval/zero_shot_words.py", argv)
    zs = WordVectorZeroShot(load_model(args.model), FERPLUS8 if args.labels == "ferplus8" else FER7, args.word_vectors)
    name = f"{Path(args.model).name}.zeroshot_{args.labels}"
    result = evaluator.evaluate_model(zs, name, args.model, evaluator.load_split(args.dataset, args.split),
                                      args.dataset, args.split, "none", metrics.RunInfo(command, args.seed))
    path = metrics.write_result(result, args.output_dir)
    print(f"accuracy vs FER2013 labels {result['accuracy']:.4f}; vs FER+ majority "
          f"{(result['ferplus8'] or result['ferplus'] or {}).get('accuracy', float('nan')):.4f}")
    if "contempt" in zs.labels:
        print(f"contempt (never trained on): predicted for {sum(r[-1] for r in result['confusion_matrix'])} faces; "
              f"FER+ contempt recall {_ferplus_recall(result, len(zs.labels) - 1):.3f}")
    print(f"wrote {path}")
    return 0


def _ferplus_recall(result: dict, k: int) -> float:
    cm = (result.get("ferplus") or {}).get("confusion_matrix")
    if not cm or sum(cm[k]) == 0:
        return float("nan")
    return cm[k][k] / sum(cm[k])


if __name__ == "__main__":
    sys.exit(cli.run(main))

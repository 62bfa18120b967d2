"""Image + text fusion, evaluated on synthetic pairs: FER faces with GoEmotions sentences of the face's label
(congruent), neutral sentences, and sentences of another emotion (conflict). Fits the text weight on
validation pairs of all three kinds (scored against the face's label: a sentence should confirm or sharpen
the face, never overturn it by default) and writes results/fusion.json, which the app uses.

    python eval/fusion.py --image_model glove_cnn --text_model text_minilm

The pairing is synthetic (no dataset pairs faces with what the person said): it shows how the two signals
combine, not how real captions behave. The plain weighted mean the app used before (text neutral counted as a
vote for a neutral face) is measured beside the rule in use.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm import cli
from fermm.data.goemotions import load_goemotions
from fermm.evaluation import evaluator, metrics
from fermm.labels import to_fer7
from fermm.serve import fusion
from fermm.training.image import DEFAULT_DATASET
from fermm.training.text import DEFAULT_GO


def probabilities(image_model, text_model, dataset: str, goemotions: str, split: str):
    """FER-7 face probabilities and labels; FER-7 text probabilities and labels (single-label sentences)."""
    faces = evaluator.load_split(dataset, split)
    p_img = to_fer7(evaluator.predict_split(image_model, faces["images"], "none")[0], image_model.labels)
    go = load_goemotions(goemotions)[split]
    one = [i for i, labels in enumerate(go["labels"]) if len(labels) == 1]
    texts = [go["text"][i] for i in one]
    p_txt = fusion.as_fer7(text_model.predict_text(texts).numpy(), text_model.labels)
    return p_img, faces["labels"], p_txt, np.array([go["labels"][i][0] for i in one])


def pairs(p_img, y_face, p_txt, y_text, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per pair kind: (face probabilities, text probabilities, face labels, text labels)."""
    out = {}
    for k, kind in enumerate(fusion.PAIR_KINDS):
        fi, si = fusion.pair_sentences(y_face, y_text, kind, seed + k)
        out[kind] = (p_img[fi], p_txt[si], y_face[fi], y_text[si])
    return out


def plain_mean(p_img: np.ndarray, p_txt: np.ndarray, w: float) -> np.ndarray:
    """The rule before: (1 - w) p_image + w p_text, neutral included."""
    return (1 - w) * p_img + w * p_txt


def kind_scores(p_img, p_txt, y, y_text, weight: float, plain_weight: float) -> dict:
    fused = fusion.fuse(p_img, p_txt, weight).argmax(1)
    plain = plain_mean(p_img, p_txt, plain_weight).argmax(1)
    return {"n_pairs": int(len(y)), "image_only": float((p_img.argmax(1) == y).mean()),
            "text_only_is_face_label": float((p_txt.argmax(1) == y).mean()),
            "fused": float((fused == y).mean()), "fused_follows_text": float((fused == y_text).mean()),
            "changed_face_answer": float((fused != p_img.argmax(1)).mean()),
            "plain_mean": float((plain == y).mean()), "plain_mean_follows_text": float((plain == y_text).mean())}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_model", default="glove_cnn")
    p.add_argument("--text_model", default="text_minilm")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--goemotions", default=str(DEFAULT_GO))
    p.add_argument("--output_dir", default="results")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def fit(val: dict) -> tuple[float, dict, float]:
    """The fitted weight (and its validation curve) of the rule in use, and the plain mean's, on all kinds."""
    p_img, p_txt, y = (np.concatenate([v[i] for v in val.values()]) for i in range(3))
    weight, curve = fusion.fit_weight(p_img, p_txt, y)
    grid = np.linspace(0, 1, 21)
    plain = [float((plain_mean(p_img, p_txt, w).argmax(1) == y).mean()) for w in grid]
    return weight, curve, round(float(grid[int(np.argmax(plain))]), 4)


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.models import load_model

    args = parse_args(argv)
    run = metrics.RunInfo(metrics.command_line("eval/fusion.py", argv), args.seed)  # commit and date as it starts
    image_model, text_model = load_model(args.image_model), load_model(args.text_model)
    val = pairs(*probabilities(image_model, text_model, args.dataset, args.goemotions, "validation"), args.seed)
    weight, curve, plain_weight = fit(val)
    test = pairs(*probabilities(image_model, text_model, args.dataset, args.goemotions, "test"), args.seed)
    result = {"image_model": args.image_model, "text_model": args.text_model, "text_weight": weight,
              "rule": "evidence: (1 - w e) p_image + w e q, e = 1 - p_text(neutral) (fermm.serve.fusion)",
              "plain_mean_weight": plain_weight, "validation_accuracy_by_weight": curve,
              "pairing": "synthetic (see eval/fusion.py); scored against the face's label",
              **{f"test_{kind}": kind_scores(*test[kind], weight, plain_weight) for kind in fusion.PAIR_KINDS},
              **run.as_dict()}
    out = Path(args.output_dir) / fusion.FUSION_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith("test_") or "weight" in k and k != "validation_accuracy_by_weight"}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))

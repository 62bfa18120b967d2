"""Image + text fusion, evaluated on synthetic pairs: FER faces with DAIR-AI sentences whose label maps
to the face's label (congruent) or to another one (conflict). Fits the text weight on validation pairs
and writes results/fusion.json, which the app uses.

    python eval/fusion.py --image_model base_cnn --text_model text_gru

The pairing is synthetic (no dataset pairs faces with what the person said): it shows how the two
signals combine, not how real captions behave. Disgust and neutral faces have no matching sentences
and are left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm import cli, data
from fermm.evaluation import evaluator, metrics
from fermm.labels import FER7, TEXT6, TEXT6_TO_FER7, to_fer7
from fermm.serve import fusion
from fermm.training.image import DEFAULT_DATASET
from fermm.training.text import DEFAULT_TEXT

LOVE_DROPPED = {**TEXT6_TO_FER7, "love": None}  # the alternative to love -> happy, measured beside it


def probabilities(image_model, text_model, dataset: str, text_dataset: str, split: str):
    """FER-7 face probabilities, face labels, DAIR-AI 6-way text probabilities, text labels."""
    faces = evaluator.load_split(dataset, split)
    p_img = to_fer7(evaluator.predict_split(image_model, faces["images"], "none")[0], image_model.labels)
    texts = data.load_text(text_dataset)[split]
    p_txt6 = text_model.predict_text(list(texts["text"])).numpy().astype(np.float64)
    return p_img, faces["labels"], p_txt6, np.asarray(texts["label"])


def mapping_effect(p_txt6: np.ndarray, y_text: np.ndarray) -> dict:
    """Text accuracy in DAIR-AI's 6 labels vs on FER-7 after the label bridge (love -> happy merges the
    joy/love confusions), and with love's mass spread evenly instead (compared on the non-love sentences,
    where both mappings can be right)."""
    y_fer = np.array([FER7.index(TEXT6_TO_FER7[TEXT6[t]]) for t in y_text])
    not_love = y_text != TEXT6.index("love")
    merged = fusion.text_to_fer7(p_txt6).argmax(1)
    dropped = fusion.text_to_fer7(p_txt6, LOVE_DROPPED).argmax(1)
    return {"text6_accuracy": float((p_txt6.argmax(1) == y_text).mean()),
            "fer7_accuracy_love_to_happy": float((merged == y_fer).mean()),
            "fer7_accuracy_love_to_happy_non_love_sentences": float((merged[not_love] == y_fer[not_love]).mean()),
            "fer7_accuracy_love_dropped_non_love_sentences": float((dropped[not_love] == y_fer[not_love]).mean()),
            "share_of_love_sentences": float(1 - not_love.mean())}


def pair_scores(p_img, y_face, p_txt, y_text, conflict: bool, weight: float, seed: int,
                head: fusion.LearnedFusion | None = None) -> dict:
    """Image-only, text-only and fused accuracy on synthetic pairs (``p_txt``: FER-7 text probabilities)."""
    fi, si = fusion.pair_sentences(y_face, y_text, conflict, seed)
    y = y_face[fi]
    text_fer = np.array([FER7.index(TEXT6_TO_FER7[TEXT6[t]]) for t in y_text[si]])
    fused = fusion.fuse(p_img[fi], p_txt[si], weight).argmax(1)
    out = {"n_pairs": int(len(fi)), "image_only": float((p_img[fi].argmax(1) == y).mean()),
           "text_only": float((p_txt[si].argmax(1) == y).mean()), "fused": float((fused == y).mean())}
    if head is not None:
        learned = head.predict_proba(p_img[fi], p_txt[si]).argmax(1)
        out["fused_learned_head"] = float((learned == y).mean())
    if conflict:  # whom does the fused result follow when face and sentence disagree?
        out["fused_follows_face"] = out["fused"]
        out["fused_follows_text"] = float((fused == text_fer).mean())
        if head is not None:
            out["learned_head_follows_text"] = float((learned == text_fer).mean())
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_model", default="base_cnn")
    p.add_argument("--text_model", default="text_gru")
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--text_dataset", default=str(DEFAULT_TEXT))
    p.add_argument("--output_dir", default="results")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from fermm.models import load_model

    args = parse_args(argv)
    command = metrics.command_line("eval/fusion.py", argv)
    image_model, text_model = load_model(args.image_model), load_model(args.text_model)
    p_img, y_face, p_txt6, y_text = probabilities(image_model, text_model, args.dataset, args.text_dataset,
                                                  "validation")
    p_txt = fusion.text_to_fer7(p_txt6)
    fi, si = fusion.pair_sentences(y_face, y_text, False, args.seed)
    weight, curve = fusion.fit_weight(p_img[fi], p_txt[si], y_face[fi])
    head = fusion.LearnedFusion(seed=args.seed).fit(p_img[fi], p_txt[si], y_face[fi])
    p_img, y_face, p_txt6, y_text = probabilities(image_model, text_model, args.dataset, args.text_dataset, "test")
    test = (p_img, y_face, fusion.text_to_fer7(p_txt6), y_text)
    love_dropped = (p_img, y_face, fusion.text_to_fer7(p_txt6, LOVE_DROPPED), y_text)
    result = {"image_model": args.image_model, "text_model": args.text_model, "text_weight": weight,
              "validation_accuracy_by_weight": curve, "pairing": "synthetic (see eval/fusion.py)",
              "test_congruent": pair_scores(*test, conflict=False, weight=weight, seed=args.seed, head=head),
              "test_conflict": pair_scores(*test, conflict=True, weight=weight, seed=args.seed, head=head),
              "test_congruent_love_dropped": pair_scores(*love_dropped, conflict=False, weight=weight, seed=args.seed),
              "label_mapping_on_text_test": mapping_effect(p_txt6, y_text),
              **metrics.RunInfo(command, args.seed).as_dict()}
    out = Path(args.output_dir) / fusion.FUSION_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("text_weight", "test_congruent", "test_conflict",
                                             "test_congruent_love_dropped", "label_mapping_on_text_test")}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))

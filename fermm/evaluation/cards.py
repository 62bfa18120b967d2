"""Model cards: intended use, out-of-scope uses, metrics (from ``results/`` when this exact model was
measured, else its training history), limits."""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from fermm.evaluation.metrics import precision_label
from fermm.labels import FER7
from fermm.models import fingerprint
from fermm.paths import RESULTS_DIR

INTENDED_USE = (
    "Research, teaching and demos of facial expression recognition: classifying the *visible expression* of "
    "a cropped, roughly frontal face into one of the FER2013 categories.")
OUT_OF_SCOPE = (
    "Out of scope: surveillance or monitoring of people; decisions about people (hiring, admission, credit, "
    "policing, insurance, grading); inferring a person's inner emotional state, personality, honesty or "
    "mental health (a facial expression is not an emotion); any use on people who have not agreed to it.")
LIMITS = (
    "Known limits and biases: FER2013 was scraped by web image search; its labels are noisy (FER+ relabelling "
    "agrees with them on about 64% of images, `python -m fermm.data report`) and its faces are 48x48 "
    "grayscale, mostly adults, and skewed in age, ethnicity and pose as web photos are. 'Disgust' has 436 "
    "training images of 28,709 and is the least reliable class. Accuracy on other populations, lighting, "
    "occlusions and camera angles is unknown and likely lower. Expressions are also read differently across "
    "cultures.")

FRAMING = (
    "Framing: it expects a face framed as FER2013 frames faces, filling the square with the top of the forehead "
    "to the chin; `fermm.faces.find_and_crop` cuts photos that way (the framing measured on FER2013, "
    "`fermm/assets/framing.json`), while a looser crop, such as a detector box with a 25% margin, costs many points.")


def measured_result(folder: str | Path | None, results_dir: str | Path | None = None) -> dict | None:
    """The test result (no TTA) recorded for exactly the model in ``folder``, found by its fingerprint (a
    result named like the model may describe another one, e.g. the bundle a run is about to replace)."""
    if folder is None or not (Path(folder) / "config.json").exists():
        return None

    fp = fingerprint(folder)
    for f in sorted(Path(results_dir or RESULTS_DIR).glob("*.json")):
        r = json.loads(f.read_text())
        if isinstance(r, dict) and r.get("model_sha256") == fp and r.get("split") == "test" \
                and r.get("tta", "none") == "none":
            return r
    return None


def run_history(run_dir: str | Path) -> list[dict] | None:
    """The training history of a run folder's last stage (``stage_*/history.json``), if it has one."""
    found = sorted(Path(run_dir).glob("stage_*/history.json"), key=lambda f: f.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else None


def _metrics_section(history: list[dict] | None, measured: dict | None = None,
                     validation: str = "FER2013 PublicTest") -> list[str]:
    lines = ["## Metrics", ""]
    if measured:
        r = measured
        lo, hi = r.get("accuracy_ci95", [None, None])
        lines += [f"Measured by `{r.get('command', 'eval/evaluate.py')}` on {r['dataset']} `{r['split']}` "
                  f"(n={r['n']}, TTA {r.get('tta', 'none')}, {precision_label(r)}, commit {r.get('commit', '?')}, "
                  f"{r.get('date', '?')}):",
                  "", f"- accuracy: {r['accuracy']:.4f}" + (f" (95% CI {lo:.4f}-{hi:.4f})" if lo is not None else ""),
                  *([f"- accuracy on the {r['n_not_in_train']:,} test images whose pixels do not also occur in train: "
                     f"{r['accuracy_not_in_train']:.4f}"] if r.get("accuracy_not_in_train") is not None else []),
                  f"- macro F1: {r.get('macro_f1', float('nan')):.4f}", "", "| class | precision | recall | F1 |",
                  "|---|---|---|---|"]
        for c, m in r.get("per_class", {}).items():
            lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    elif history:
        best = max(history, key=lambda h: h.get("val_accuracy", -1))
        lines.append(f"Validation ({validation}) accuracy during training: {best['val_accuracy']:.4f} at epoch "
                     f"{best['epoch'] + 1}. Test accuracy has not been measured yet: run `python eval/evaluate.py`.")
    else:
        lines.append("Not measured yet.")
    return lines


def _recipe_notes(training: dict | None) -> list[str]:
    """Sentences for recipe choices anywhere in the run's lineage: FER+ soft targets and distillation."""
    weight, teachers = 0.0, []
    while training:
        weight = weight or float(training.get("ferplus_soft") or 0.0)
        if training.get("teacher"):
            teachers.append(training)
        training = training.get("init_from_training_args")
    notes = [f"Its training targets blend each FER2013 label ({1 - weight:.2g}) with that image's FER+ vote "
             f"distribution over the same seven classes ({weight:.2g}; Barsoum et al. 2016, MIT)."] if weight else []
    stages: dict[tuple, int] = {}  # one sentence per teacher and setting, however many stages used it
    for t in teachers:
        key = (t["teacher"], t.get("alpha", 0.7), t.get("temperature", 4.0))
        stages[key] = stages.get(key, 0) + 1
    notes += [f"{_STAGES.get(n, f'{n} stages')} of its training matched the probabilities of the teacher `{teacher}` "
              f"(knowledge distillation, Hinton et al. 2015: weight {alpha:g} on the teacher, temperature {temp:g})."
              for (teacher, alpha, temp), n in stages.items()]
    return notes


_STAGES = {1: "A stage", 2: "Two stages", 3: "Three stages"}


def card_data(name: str, pipeline_tag: str, tags: list[str], datasets: list[str], measured: dict | None,
              dataset_name: str) -> ModelCardData:
    """The card's front matter as huggingface_hub's ``ModelCardData``; a measured result becomes its
    ``eval_results`` (the Hub shows them on the model page)."""
    results = None
    if measured:
        common = {"task_type": pipeline_tag, "dataset_type": datasets[0], "dataset_name": dataset_name,
                  "dataset_split": measured["split"], "metric_type": "accuracy"}
        results = [EvalResult(**common, metric_name="accuracy", metric_value=round(measured["accuracy"], 4))]
        if measured.get("multilabel_macro_f1") is not None:  # text on GoEmotions: the dataset paper's figure
            results.append(EvalResult(**{**common, "metric_type": "f1"}, metric_name="multi-label macro-F1",
                                      metric_value=round(measured["multilabel_macro_f1"], 4)))
        if measured.get("accuracy_not_in_train") is not None:
            results.append(EvalResult(**common, metric_name="accuracy on the images not also in train",
                                      metric_value=round(measured["accuracy_not_in_train"], 4)))
    return ModelCardData(library_name="fermm", license="mit", pipeline_tag=pipeline_tag, tags=tags,
                         datasets=datasets, model_name=name, eval_results=results)


def _training_section(training: dict | None) -> list[str]:
    """The training arguments, folded away (people read the summary above; tools read training_args.json)."""
    if not training:
        return []
    keep = {k: v for k, v in training.items() if k != "push_to_hub" and v is not None}
    return ["## Training", "", "<details><summary>Training arguments (also in training_args.json)</summary>", "",
            "```json", json.dumps(keep, indent=2, default=str), "```", "", "</details>", ""]


def _summary(measured: dict | None, history: list[dict] | None) -> str:
    if measured:
        text = f"Accuracy {measured['accuracy']:.1%} on {measured['dataset'].rstrip('/').split('/')[-1]} `{measured['split']}`"
        if measured.get("accuracy_not_in_train") is not None:
            text += f" ({measured['accuracy_not_in_train']:.1%} on the images not also in train)"
        return text + "."
    if history:
        return f"Validation accuracy during training: {max(h.get('val_accuracy', 0) for h in history):.1%}."
    return "Not measured yet."


def model_card(name: str, model, training: dict | None = None, history: list[dict] | None = None,
               description: str = "", measured: dict | None = None, source: str | None = None) -> str:
    """Model card (``huggingface_hub.ModelCard`` text): a human summary first, then use, metrics, limits and the
    training arguments folded away. ``source`` is what the card's example passes to ``load_model`` (the Hub repo
    or folder of these weights; default ``name``, right for registry models)."""
    data = card_data(name, "image-classification", ["facial-expression-recognition", "fer2013"], ["fer2013"],
                     measured, "FER2013")
    body = [f"# fermm `{name}`", "", (description or f"A `{getattr(model, 'family', 'model')}` facial expression "
            f"classifier trained from scratch on FER2013 with [fermm](https://github.com/fermm/fermm).") + " "
            + _summary(measured, history) + " For research and teaching; not for surveillance or decisions about "
            "people (below).", *_recipe_notes(training), "",
            f"Labels: {', '.join(model.labels)}. Input: {model.input_size}x{model.input_size}, {model.channels} "
            f"channel(s), mean {list(model.mean)}, std {list(model.std)}.", "", FRAMING, "",
            "```python", "import fermm", f"model = fermm.load_model(\"{source or name}\")",
            "probs = model.predict_proba([face_image])  # (1, n_labels)", "```", "",
            "## Intended use", "", INTENDED_USE, "", "## Out-of-scope uses", "", OUT_OF_SCOPE, "",
            *_metrics_section(history, measured), "", "## Limitations and biases", "", LIMITS, "",
            *_training_section(training)]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)))


TEXT_INTENDED_USE = (
    "Research, teaching and demos of emotion classification of short English sentences, alone or fused with a "
    "face in the fermm app. English only: text with no English word it knows is reported as unreadable.")
DAIR_LIMITS = (
    "Known limits and biases: trained on DAIR-AI emotion (English tweets, lower-cased, found by hashtags, so "
    "the labels are distant supervision, not annotations). It has six labels (sadness, joy, love, anger, fear, "
    "surprise): it cannot say 'neutral' or 'disgust', and 'surprise' (572 training sentences) and 'love' are the "
    "least reliable. Sarcasm, negation, other languages and other registers are handled poorly.")
GO_LIMITS = (
    "Known limits and biases: GoEmotions is English Reddit comments from 2019, labelled by crowd raters (often "
    "disagreeing); Reddit's users skew young, male and North American, and its topics and slang differ from "
    "other registers. 'disgust' (498 training comments) and 'fear' (541) are the least reliable labels; sarcasm "
    "and negation are handled poorly. A sentence is not a person's inner state.")
GO_DATA = "GoEmotions (Demszky et al., ACL 2020; Ekman's labels = FER-7, multi-label, one sigmoid per label)"


def text_model_card(name: str, model, training: dict | None = None, history: list[dict] | None = None,
                    measured: dict | None = None) -> str:
    """Model card of a text emotion classifier (see :func:`model_card`); names the data it was trained on."""
    go = tuple(model.labels) == FER7
    trained_on = (GO_DATA + (" + DAIR-AI emotion (its rows as partial labels: no neutral or disgust)"
                             if (training or {}).get("data") == "goemotions+dair" else "")) if go else "DAIR-AI emotion"
    datasets = (["google-research-datasets/go_emotions"] if go else []) + (["dair-ai/emotion"] if "DAIR" in trained_on else [])
    data = card_data(name, "text-classification", ["emotion"], datasets, measured,
                     "GoEmotions (Ekman)" if go else "DAIR-AI emotion")
    body = [f"# fermm `{name}`", "", f"A `{type(model).__name__}` text emotion classifier trained on {trained_on} "
            f"with [fermm](https://github.com/fermm/fermm). Labels: {', '.join(model.labels)}. "
            + _summary(measured, history), "", *(_calibration_lines(model) if go else []),
            "## Intended use", "", TEXT_INTENDED_USE, "", "## Out-of-scope uses", "", OUT_OF_SCOPE, "",
            *_metrics_section(history, measured, "GoEmotions validation" if go else "DAIR-AI emotion validation"),
            *(_multilabel_lines(measured) if go and measured else []), "", "## Limitations and biases", "",
            GO_LIMITS if go else DAIR_LIMITS, "", *_training_section(training)]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)))


def _calibration_lines(model) -> list[str]:
    return [f"One answer per sentence: softmax at temperature {model.temperature:.3g}, fitted on validation. "
            "Multi-label: `predict_multilabel` (sigmoids) against per-label thresholds fitted on validation "
            f"({', '.join(f'{lab} {t:.2f}' for lab, t in zip(model.labels, model.thresholds or ()))}).", ""]


def _multilabel_lines(r: dict) -> list[str]:
    dair = r.get("dair_fer7") or {}
    lines = ["", f"GoEmotions multi-label macro-F1 over all {r['n_all_rows']:,} rows: {r['multilabel_macro_f1']:.4f} "
             f"(validation thresholds), {r['multilabel_macro_f1_at_0.3']:.4f} at the paper's 0.3. Accuracy and the "
             f"table above: the {r['n']:,} single-label rows."]
    return lines + ([f"DAIR-AI emotion `{dair['split']}` on FER labels: {dair['accuracy']:.4f}."] if dair else [])


INT8_HEADING = "## Served precision"


def write_int8_section(folder: str | Path, record: dict) -> None:
    """Put (or replace) the card's "Served precision" section, just before "## Intended use"."""
    card = Path(folder) / "README.md"
    if not card.exists():
        return
    v = record["validation"]
    section = (f"{INT8_HEADING}\n\nServed as an int8 graph in ONNX Runtime (`model.int8.onnx`, activations "
               f"calibrated on {record['calibration']['n']} FER2013 train faces), faster per face than PyTorch "
               f"(`python -m bench.precision` times both). On FER2013 validation it scores {v['accuracy_int8']:.2%} "
               f"against {v['accuracy_fp32']:.2%} in PyTorch fp32, with the same top label on {v['agreement']:.2%} "
               f"of faces (`{record['command']}`, commit {record['commit']}, {record['date']}). If the weights "
               f"change, the graph is not used: fermm checks it against `model.int8.json` on load. "
               f"`FERMM_RUNTIME=torch` serves PyTorch.\n\n")
    text = card.read_text()
    if INT8_HEADING in text:
        start = text.index(INT8_HEADING)
        end = text.find("\n## ", start + len(INT8_HEADING))
        text = text[:start] + text[end + 1 if end >= 0 else len(text):]
    at = text.find("## Intended use")
    card.write_text(text[:at] + section + text[at:] if at >= 0 else text.rstrip() + "\n\n" + section)

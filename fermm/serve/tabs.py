"""The app's Accuracy, Confusion, Evaluate and About tabs (the Predict tab is :mod:`fermm.serve.ui`)."""
from __future__ import annotations

import atexit
import contextlib
import csv
import html
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import gradio as gr

from fermm.evaluation import evaluator, metrics, plots, userset
from fermm.evaluation.cards import INTENDED_USE, LIMITS, OUT_OF_SCOPE
from fermm.labels import FER7
from fermm.models import list_models
from fermm.serve import end_to_end, memory
from fermm.serve.components import MAX_UPLOAD_MB, ModelBoxes, user_error
from fermm.serve.predict import SERVED_TTA, ModelPool

log = logging.getLogger(__name__)


MAX_NAMED_SKIPS = 20  # skipped files named in the Evaluate summary (the rest are counted)
SERVED_PEERS = ("fer_peer",)  # measured beside the served models: the `fer` package's model


def shown_results(results: list[dict], research: bool, served: dict[str, dict] | None = None,
                  served_tta: str = SERVED_TTA) -> list[dict]:
    """Test-split face results. Default: one row per served model (``served``: name -> {"sha256", "precision"}, as
    :meth:`ModelPool.served` gives; None: every registry name, none marked as served), for the weights it serves
    when results record them, in the views the app serves (``served_tta``, else without TTA), with the best TTA
    measured for those weights; then the peers. ``research``: every test row of every run."""
    tests = [r for r in results if r.get("task", "image") == "image" and r["split"] == "test"]
    if research:
        return tests
    names = list(served) if served is not None else list_models()
    out = []
    for name in [*names, *SERVED_PEERS]:
        here = (served or {}).get(name, {})
        rows = _same_weights([r for r in tests if r["model"] == name], here.get("sha256"))
        if not rows:
            continue
        row = next((r for r in rows if r["tta"] == served_tta), None) or next((r for r in rows if r["tta"] == "none"),
                                                                               rows[0])
        best = max(rows, key=lambda r: r["accuracy"])
        out.append({**row, "served_here": served is not None and name in served, "runs_here": here.get("precision"),
                    "best_tta": best["tta"], "best_accuracy": best["accuracy"],
                    "best_precision": metrics.precision_label(best)})
    return out


def _same_weights(rows: list[dict], sha256: str | None) -> list[dict]:
    """The rows measured on the weights with this fingerprint (and those that record none, from before results
    recorded it); all rows when the fingerprint is unknown."""
    return rows if sha256 is None else [r for r in rows if r.get("model_sha256") in (sha256, None)]


def served_markdown(rows: list[dict], unmeasured: list[str] = ()) -> str:
    """The default Accuracy table: the served models (marked) and the peers, one row each; served models with no
    test result for their weights are listed as not measured."""
    lines = ["| model | | views averaged | runs in | accuracy (95% CI) | not in train | macro-F1 | best measured | "
             "commit, date |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["accuracy_ci95"]
        views = {"none": "the face", "flip": "face + mirror", "tencrop": "ten crops"}.get(r["tta"], r["tta"])
        runs = metrics.precision_label(r)
        if r.get("runs_here") and metrics.precision_label({"precision": r["runs_here"]}) != runs:
            runs += f" (measured); {metrics.precision_label({'precision': r['runs_here']})} here"
        lines.append(f"| `{r['model']}` | {'**served here**' if r['served_here'] else 'peer'} | {views} | {runs} | "
                     f"{r['accuracy']:.2%} ({lo:.1%}-{hi:.1%}) | {metrics.pct(r.get('accuracy_not_in_train'))} | "
                     f"{metrics.macro_f1_of(r):.3f} | {r['best_accuracy']:.2%} ({r['best_tta']}, "
                     f"{r['best_precision']}) | {r['commit']}, {r['date'][:10]} |")
    lines += [f"| `{name}` | **served here** | not measured yet: `python eval/evaluate.py --models {name} "
              f"--split test` | | | | | | |" for name in unmeasured]
    return "\n".join(lines)


def accuracy_tab(results_dir: Path, served: Callable[[], dict[str, dict]] | None = None):
    """``served``: the image models the app serves, as :meth:`ModelPool.served` gives them."""
    def load(research: bool = False):
        results = metrics.read_results(results_dir)
        now = served() if served else None
        faces = shown_results(results, False, now)
        unmeasured = [n for n in (now or {}) if n not in {r["model"] for r in faces}]
        texts = [r for r in results if r.get("task") == "text" and r["split"] == "test"
                 and r["model"] in list_models("text")]
        table = "\n\n".join([served_markdown(faces, unmeasured), *([metrics.text_table(texts)] if texts else []),
                              metrics.published_line(plots.PUBLISHED)])
        if research:  # every run and split, as a table only
            table += ("\n\n**All runs** (research runs, validation rows, every TTA):\n\n"
                      + metrics.markdown_table(results))
        return served_table(results_dir), table, plots.accuracy_bars(faces), plots.per_class_f1(faces)

    served_md = gr.Markdown()
    gr.Markdown("FER2013 test accuracy (PrivateTest) of the models this app serves, as it serves them, measured by "
                "`eval/evaluate.py`, with 95% bootstrap confidence intervals and the accuracy on the test images "
                "that do not also occur in train. Grey bars are published figures, not measured here.")
    research = gr.Checkbox(False, label="Show all runs (research runs and validation rows; table only)")
    table = gr.Markdown()
    bars = gr.Plot(label="Accuracy")
    f1 = gr.Plot(label="F1 per class")
    outputs = [served_md, table, bars, f1]
    gr.Button("Reload results", size="sm").click(load, research, outputs, api_name="accuracy")
    research.change(load, research, outputs)
    return load, outputs


def served_table(results_dir: Path) -> str:
    """The end-to-end figures (a photo through detection and the served crop) as markdown, if measured."""
    table = end_to_end.markdown_table(end_to_end.read_records(Path(results_dir) / "end_to_end"))
    if not table:
        return ""
    return ("**As served**: FER2013 test faces placed in synthetic photos (`eval/end_to_end.py`), found by the "
            "face detector, cropped as the app crops them and classified, against the same model on the original "
            "48x48 image.\n\n" + table)


def confusion_choices(results: list[dict]) -> list[tuple[str, str]]:
    """(label, result name) per result: the served models' test results first, best first, each labelled with
    its accuracy; then the rest (validation, research runs)."""
    served = set(list_models()) | set(list_models("text")) | set(SERVED_PEERS)

    def order(r: dict) -> tuple:  # faces before text: the tab is about faces first
        return r["model"] not in served, r["split"] != "test", r.get("task") == "text", -r["accuracy"]

    return [(f"{r['model']} · {r['split']}" + ("" if r["tta"] == "none" else f" · {r['tta']}")
             + f" · {r['accuracy']:.1%}", metrics.result_name(r["model"], r["split"], r["tta"]))
            for r in sorted(results, key=order)]


def confusion_tab(results_dir: Path):
    def show(name: str | None, normalize: str, labels: str):
        read = metrics.read_results(results_dir)
        results = {metrics.result_name(r["model"], r["split"], r["tta"]): r for r in read}
        if not results:
            return gr.update(choices=[], value=None), None
        options = confusion_choices(read)
        name = name if name in results else options[0][1]  # default: the best served model on test
        fig = plots.confusion_heatmap(results[name], normalize == "row-normalised", labels == "FER+ majority")
        return gr.update(choices=options, value=name), fig

    with gr.Row():
        model = gr.Dropdown(confusion_choices(metrics.read_results(results_dir)), label="Result", value=None)
        normalize = gr.Radio(["counts", "row-normalised"], value="counts", label="Show")
        labels = gr.Radio(["FER2013", "FER+ majority"], value="FER2013", label="True labels")
    heat = gr.Plot(label="Confusion matrix")
    for control in (model, normalize, labels):
        control.change(show, [model, normalize, labels], [model, heat], api_name=False)
    return (lambda: show(None, "counts", "FER2013")), [model, heat]


def evaluate_tab(pool: ModelPool, available: list[str]) -> ModelBoxes:
    def run(zip_path, models, detect, progress=gr.Progress()):
        if not zip_path:
            raise user_error("Please upload a zip of labelled face images.")
        if not models:
            raise user_error("Please choose at least one model.")
        try:
            labelled = userset.read_zip(zip_path)
        except userset.ZipError as e:
            raise user_error(f"This zip cannot be used: {e}.") from None
        scores, rows, skipped = evaluator.evaluate_set(pool, models, labelled, bool(detect), progress)
        lines = [f"Evaluated {len(rows)} images against your labels."]
        lines += [f"- skipped {n}: {html.escape(reason)}" for reason, n in skipped.items()]
        if labelled.skipped_files:
            shown = labelled.skipped_files[:MAX_NAMED_SKIPS]
            lines += ["", "Skipped files:"] + [f"- `{html.escape(f)}`: {html.escape(r)}" for f, r in shown]
            if len(labelled.skipped_files) > len(shown):
                lines.append(f"- ... and {len(labelled.skipped_files) - len(shown)} more")
        table = [[m, f"{r['accuracy']:.1%}", f"{r['accuracy_ci95'][0]:.1%}-{r['accuracy_ci95'][1]:.1%}",
                  round(r["macro_f1"], 3), r["n"]] for m, r in scores.items()]
        path = export_path("predictions.csv")
        with open(path, "w", newline="") as out:
            if rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        del labelled, rows
        memory.trim()  # the zip's images are freed: hand their pages back
        return "\n".join(lines), table, plots.confusion_grid(scores) if scores else None, str(path)

    gr.Markdown(f"Upload a zip of face images with one folder per class ({', '.join(FER7)}), or with a "
                f"`labels.csv` of `file,label` rows. Limits: {MAX_UPLOAD_MB} MB, 5,000 files, 100 megapixels in all. "
                "Nothing is kept beyond Gradio's temporary cache.")
    with gr.Row():
        with gr.Column():
            zip_file = gr.File(label="Labelled zip", file_types=[".zip"], type="filepath")
            models = ModelBoxes(available, value=available, label="Models")
            detect = gr.Checkbox(label="Detect faces first (for photos; off for already-cropped faces)")
            button = gr.Button("Evaluate", variant="primary")
        with gr.Column():
            summary = gr.Markdown()
            table = gr.Dataframe(headers=["model", "accuracy", "95% CI", "macro-F1", "n"], interactive=False)
            heat = gr.Plot(label="Confusion matrices against your labels (one per model)")
            download = gr.File(label="Per-image predictions (CSV)")
    button.click(run, [zip_file, models, detect], [summary, table, heat, download], api_name="evaluate",
                 concurrency_limit=1)
    return models


def _card(pool: ModelPool, name: str) -> str:
    """The model card (README.md) of a model that resolves to a local folder, without its front matter."""
    folder = Path(pool.source(name))
    card = folder / "README.md"
    if not card.is_file():
        return f"No model card found for `{name}` ({html.escape(pool.error(name) or str(folder))})."
    text = card.read_text(encoding="utf-8", errors="replace")
    return text.split("---", 2)[2] if text.startswith("---") and text.count("---") >= 2 else text


EXPORT_MAX_AGE = 300  # seconds: Gradio serves (and later deletes) its own copy as soon as a handler returns
_exports: Path | None = None


def export_path(name: str) -> Path:
    """A fresh file for a download, in this process's export folder, whose older files are removed first
    (a file returned to a gr.File is copied into Gradio's cache; the original would otherwise stay)."""
    global _exports
    if _exports is None:
        _exports = Path(tempfile.mkdtemp(prefix="fermm_exports_"))
        atexit.register(shutil.rmtree, _exports, True)
    now = time.time()
    for f in _exports.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another request may have removed it meanwhile
            if now - f.stat().st_mtime > EXPORT_MAX_AGE:
                f.unlink()
    return _exports / f"{uuid.uuid4().hex[:8]}_{name}"


def about_tab(pools: list[ModelPool]) -> None:
    gr.Markdown("\n\n".join([
        "## About fermm", INTENDED_USE, "### Out-of-scope uses", OUT_OF_SCOPE, "### Limits", LIMITS,
        "### Privacy", "Uploaded images are processed in memory and in Gradio's temporary cache, which is "
        "emptied regularly; they are not stored, logged or shared. The app sends no analytics or telemetry.",
        "### Data and licences", "FER2013 (Goodfellow et al., 2013; research and non-commercial use); FER+ votes "
        "(Microsoft, MIT); GoEmotions (Demszky et al., 2020; Apache-2.0), the text models' main data, and DAIR-AI "
        "emotion text (Saravia et al., 2018; educational and research use). The text models read English only. Face "
        "detector: YuNet (OpenCV Zoo, MIT). Example photo: NASA astronaut portrait (public domain).",
        "### Model cards",
    ]))
    for pool in pools:
        for name in pool.names:
            with gr.Accordion(f"Model card: {name}", open=False):
                gr.Markdown(_card(pool, name))

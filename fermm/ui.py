"""The Gradio app: Predict, Accuracy, Confusion and About tabs. ``app.py`` calls :func:`build_demo`.

Privacy: uploads live only in Gradio's temporary cache, which ``delete_cache`` empties; nothing is
logged or sent anywhere (analytics are switched off before gradio is imported).
"""
from __future__ import annotations

import html
import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_RUN_HISTORY", "False")  # no copies of requests kept, not even in the browser

import gradio as gr  # noqa: E402

from starlette.middleware import Middleware  # noqa: E402

from fermm import faces as facelib  # noqa: E402
from fermm.bodylimit import BodyLimit  # noqa: E402
from fermm.labels import FER7  # noqa: E402
from fermm.predict import ImageResult, ModelPool, predict_image  # noqa: E402

log = logging.getLogger(__name__)
EXAMPLES = Path(__file__).parent / "assets" / "examples"
MAX_UPLOAD_MB = 25
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
SESSIONS = 200
MAX_BODY = (MAX_UPLOAD_MB * 4 // 3 + 2) * 2**20  # an upload, or an inline base64 image (4/3 of its size), + slack


def launch_options(sessions: int = SESSIONS) -> dict[str, object]:
    """``demo.launch`` arguments, fresh each time (Gradio writes into ``app_kwargs``). Gradio keeps a copy of
    every block's config per session (~170 KB here) for 10,000 sessions by default: +1.7 GB under sustained
    load (bench/load.py --soak), and nothing here needs long-lived session state. Uploads are capped by
    Gradio, every request body by :class:`fermm.bodylimit.BodyLimit`."""
    return {"max_file_size": MAX_UPLOAD, "state_session_capacity": sessions,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY)]}}


class FileImage(gr.Image):
    """gr.Image that hands the raw upload (a path, or the bytes of an inline data: URL) to fermm instead of
    decoding it itself, so damaged or fake images reach :func:`fermm.faces.load_image` and get a clear
    message instead of a crash."""

    def get_block_name(self) -> str:
        return "image"  # render with gr.Image's front-end component

    def preprocess(self, payload) -> str | bytes | None:
        if payload is None:
            return None
        if payload.url and payload.url[:5].lower() == "data:":
            return data_url_bytes(payload.url)
        return payload.path


def data_url_bytes(url: str) -> bytes:
    """An image sent inline (an API client's data: URL) as bytes, decoded in memory: held to the upload cap,
    which such images bypass, and never written to disk (Gradio would save a copy outside its cleaned cache).
    Line-wrapped or unpadded base64 is accepted, as Gradio's own decoder accepts it."""
    import base64
    import binascii

    head, _, body = url.partition(",")
    if not head.strip().lower().endswith(";base64"):
        raise gr.Error("This image cannot be used: only base64 data URLs are accepted.")
    body = "".join(body.split())
    if len(body) * 3 // 4 > MAX_UPLOAD_MB * 2**20:
        raise gr.Error(f"This image is larger than the {MAX_UPLOAD_MB} MB upload limit.")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise gr.Error("This image cannot be used: its data URL is not valid base64.") from None


class _RegistryChoices:
    """For model choosers: submitted names are checked against the model registry, not against the session's
    choices, since Refresh changes one session's choices and Gradio forgets old sessions' state (``SESSIONS``)."""

    kind = "image"

    def check(self, values: list) -> None:
        from fermm.models import list_models

        names = list_models(self.kind)
        unknown = [v for v in values if v not in names]
        if unknown:
            raise gr.Error(f"Unknown model {unknown[0]!r}: the {self.kind} models are {', '.join(names)}.")


class ModelBoxes(_RegistryChoices, gr.CheckboxGroup):
    """Image-model checkboxes that accept any registry model, offered or not."""

    def get_block_name(self) -> str:
        return "checkboxgroup"

    def preprocess(self, payload: list | None) -> list[str]:
        self.check(payload or [])
        return list(payload or [])


class ModelMenu(_RegistryChoices, gr.Dropdown):
    """A text-model dropdown that accepts any registry model, offered or not."""

    kind = "text"

    def get_block_name(self) -> str:
        return "dropdown"

    def preprocess(self, payload: str | None) -> str | None:
        self.check([payload] if payload is not None else [])
        return payload


def _rows(result: ImageResult) -> list[list]:
    """One row per face and model (+ the fused row): face, model, probabilities..., top label; and a row
    for the text's reading (its mass moved onto FER-7; top = its own label)."""
    rows = []
    if result.text:
        t = result.text
        rows.append(["text", f"{t.model} (text)", *[round(t.fer7[lab], 3) for lab in FER7], t.top])
    for face in result.faces:
        joint = {f"{m} + text (CLIP joint)": p for m, p in face.joint.items()}
        for model, probs in {**face.probs, **joint, "fused": face.fused}.items():
            if not probs:
                continue
            cells = [round(probs.get(lab, float("nan")), 3) for lab in FER7]
            rows.append([face.index, model, *cells, max(probs, key=probs.get)])
    return rows


def _status(result: ImageResult, n_models: int, has_image: bool = True) -> str:
    lines = []
    if result.text:
        t = result.text
        lines.append(f"Text ({html.escape(t.model)}): **{t.top}** ({t.probs[t.top]:.0%}).")
        if result.faces:
            lines.append(f"Each face's fused result weighs the text at {t.weight:.2f} and the face models at "
                         f"{1 - t.weight:.2f}.")
        else:
            lines.append("**Text-only result**: no face was classified.")
    if has_image and not result.faces:
        lines.append("**No face found.** Tick *Treat the whole image as one face* to classify the image as it is.")
    elif result.faces and result.whole_image:
        lines.append("The whole image was classified as one face.")
    elif result.faces:
        tops = ", ".join(f"face {f.index}: **{f.top}**" for f in result.faces if f.top)
        lines.append(f"Found {len(result.faces)} face(s). " + tops)
    lines += [f"- {html.escape(n)}" for n in result.notes]
    if result.unavailable:
        lines.append("\nUnavailable models:")
        lines += [f"- `{n}`: {html.escape(r)}" for n, r in result.unavailable.items()]
    if n_models == 0 and has_image:
        lines.append("\nNo model is selected: showing detected faces only.")
    return "\n".join(lines)


def _figure(result: ImageResult):
    """The fused probabilities per face (and the text's reading) as grouped bars."""
    import json

    from gradio.components.plot import PlotData

    from fermm.plots import grouped_bars_spec

    series = [(f"text ({result.text.model})", FER7, [result.text.fer7[lab] for lab in FER7])] if result.text else []
    series += [(f"face {f.index}", FER7, [f.fused[lab] for lab in FER7]) for f in result.faces if f.fused]
    spec = grouped_bars_spec(series, "Fused probabilities per face (and the text's reading)")
    return PlotData(type="plotly", plot=json.dumps(spec))


def _explanations(result: ImageResult, pool: ModelPool, max_faces: int = 5) -> list[tuple]:
    """(overlay, caption) for each face and model: what drove that model's top class."""
    from fermm.explain import overlay, saliency

    out = []
    for face in result.faces[:max_faces]:
        for name in face.probs:
            model, shown = pool.get(name), face.probs[name]
            try:  # explain the class the table shows (computed by ONNX Runtime; Grad-CAM runs in PyTorch)
                heat, target = saliency(model, face.crop, model.labels.index(max(shown, key=shown.get)))
            except NotImplementedError:  # ensembles combine probabilities, there is no one gradient
                continue
            out.append((overlay(face.crop, heat), f"face {face.index}, {name}: {model.labels[target]}"))
    return out


def make_predict_fn(pool: ModelPool, text_pool: ModelPool, text_weight: float):
    def predict(upload: str | bytes | None, text: str, models: list[str], whole_image: bool, explain: bool = False,
                text_model: str | None = None):
        if upload is None and not (text or "").strip():
            raise gr.Error("Please upload a photo (or paste one, or use the webcam), or type a sentence.")
        image = None
        if upload is not None:  # a path, or bytes from a data: URL
            try:
                image = facelib.load_image(upload)
            except facelib.ImageError as e:
                raise gr.Error(f"This file cannot be used: {e}.") from None
        result = predict_image(image, pool, models or [], whole_image=bool(whole_image), text=text,
                               text_pool=text_pool, text_model=text_model, text_weight=text_weight)
        if image is None:
            return None, _rows(result), _figure(result), _status(result, len(models or []), False), []
        labels = [f.top for f in result.faces] if result.faces and result.faces[0].fused else None
        boxed = facelib.draw_boxes(image, [facelib.Face(f.box, f.score) for f in result.faces], labels)
        boxed.thumbnail((1024, 1024))
        gallery = _explanations(result, pool) if explain else []
        return boxed, _rows(result), _figure(result), _status(result, len(models or [])), gallery
    return predict


def _status_rows(*pools: ModelPool) -> list[list]:
    return _rows_of([s for p in pools for s in p.status()])


def _rows_of(statuses: list) -> list[list]:
    return [[s.name, "yes" if s.available else "no", s.source, s.reason] for s in statuses]


def _refreshed_status(*pools: ModelPool) -> list[list]:
    """Refresh: models that failed to load are tried again (a Hub outage need not last until a restart)."""
    for p in pools:
        p.retry_failed()
    return _status_rows(*pools)


def _offered(pool: ModelPool, text_pool: ModelPool, offered: dict, models: list[str] | None,
             text_model: str | None, eval_models: list[str] | None) -> tuple[dict, dict, dict, dict]:
    """The model choices after Refresh (see ``_choices``)."""
    return _choices({"image": pool.available(), "text": text_pool.available()}, offered, models, text_model,
                    eval_models)


def _page_load(pool: ModelPool, text_pool: ModelPool, *choices) -> tuple:
    """A page load: the status table and the model choices, from one status pass over the pools."""
    image, text = pool.status(), text_pool.status()
    now = {"image": [s.name for s in image if s.available], "text": [s.name for s in text if s.available]}
    return _rows_of(image + text), *_choices(now, *choices)


def _choices(now: dict, offered: dict, models: list[str] | None, text_model: str | None,
             eval_models: list[str] | None) -> tuple[dict, dict, dict, dict]:
    """The model choices ``now`` ({"image": [...], "text": [...]}, the available models), if they changed: the
    user's ticks are kept, and so are their unticks, even of a model that went away and came back; models
    never declined are ticked. ``offered`` is the session's previous ``now`` plus "declined": [Predict's,
    Evaluate's]; returns the new one and updates for Predict's models, the text model and Evaluate's models
    (skipped when nothing changed, so a page load never undoes a tick the user made meanwhile)."""
    if now == {k: offered[k] for k in now}:
        return offered, gr.skip(), gr.skip(), gr.skip()
    declined = [_declined(offered["image"], selected, prev)
                for selected, prev in zip((models, eval_models), offered["declined"])]

    def ticks(gone: list[str]) -> dict:
        return gr.update(choices=now["image"], value=[m for m in now["image"] if m not in gone])

    texts = now["text"]
    text = text_model if text_model in texts else (texts[0] if texts else None)
    return ({**now, "declined": declined}, ticks(declined[0]),
            gr.update(choices=texts, value=text, visible=bool(texts)), ticks(declined[1]))


def _declined(prev_offered: list[str], selected: list[str] | None, prev_declined: list[str]) -> list[str]:
    """The models a user has unticked: those offered last time and not selected now, plus earlier unticks of
    models that were not offered last time (gone meanwhile)."""
    return ([m for m in prev_offered if m not in (selected or [])]
            + [m for m in prev_declined if m not in prev_offered])


def predict_tab(pool: ModelPool, available: list[str], unavailable: dict[str, str], text_pool: ModelPool,
                text_models: list[str], text_weight: float) -> tuple[gr.Dataframe, gr.Button, ModelBoxes, ModelMenu]:
    with gr.Row():
        with gr.Column():
            image = FileImage(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                              image_mode=None)
            text = gr.Textbox(label="Optional text (a caption, what the person said)", max_lines=4,
                              max_length=20_000)
            text_model = ModelMenu(text_models, value=text_models[0] if text_models else None,
                                   label="Text model", visible=bool(text_models))
            models = ModelBoxes(available, value=available, label="Models")
            whole = gr.Checkbox(label="Treat the whole image as one face (for already-cropped faces)")
            explain = gr.Checkbox(label="Explain: show what drove each prediction (Grad-CAM / saliency)")
            button = gr.Button("Classify", variant="primary")
            examples = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[image])
        with gr.Column():
            boxed = gr.Image(label="Faces found", type="pil", interactive=False, format="jpeg")
            status = gr.Markdown()
            chart = gr.Plot(label="Fused result")
    table = gr.Dataframe(headers=["face", "model", *FER7, "top"], label="Probabilities per face and model",
                         interactive=False)
    gallery = gr.Gallery(label="Explanations (red: what the model relied on most)", columns=6, height="auto")
    with gr.Accordion("Model availability", open=bool(unavailable)):
        status_table = gr.Dataframe(headers=["model", "available", "source", "reason"], interactive=False)
        refresh = gr.Button("Refresh", size="sm")
    button.click(make_predict_fn(pool, text_pool, text_weight), [image, text, models, whole, explain, text_model],
                 [boxed, table, chart, status, gallery],
                 api_name="predict", concurrency_limit=4)
    return status_table, refresh, models, text_model


def accuracy_tab(results_dir: Path):
    from fermm import evaluation, plots

    def load():
        results = evaluation.read_results(results_dir)
        faces = [r for r in results if r.get("task", "image") == "image"]
        return (served_table(results_dir), evaluation.markdown_table(results, plots.PUBLISHED),
                plots.accuracy_bars(faces), plots.per_class_f1(faces))

    served = gr.Markdown()
    gr.Markdown("Test accuracy of each model as measured here by `eval/evaluate.py` (FER2013 PrivateTest "
                "unless stated), with 95% bootstrap confidence intervals. Grey bars are published figures, "
                "not measured here.")
    table = gr.Markdown()
    bars = gr.Plot(label="Accuracy")
    f1 = gr.Plot(label="F1 per class")
    gr.Button("Reload results", size="sm").click(load, None, [served, table, bars, f1], api_name="accuracy")
    return load, [served, table, bars, f1]


def served_table(results_dir: Path) -> str:
    """The end-to-end figures (a photo through detection and the served crop) as markdown, if measured."""
    from fermm import end_to_end

    table = end_to_end.markdown_table(end_to_end.read_records(Path(results_dir) / "end_to_end"))
    if not table:
        return ""
    return ("**As served**: FER2013 test faces placed in synthetic photos (`eval/end_to_end.py`), found by the "
            "face detector, cropped as the app crops them and classified, against the same model on the original "
            "48x48 image.\n\n" + table)


def confusion_tab(results_dir: Path):
    from fermm import evaluation, plots

    def choices():
        return [evaluation.result_name(r["model"], r["split"], r["tta"]) for r in evaluation.read_results(results_dir)]

    def show(name: str | None, normalize: str, labels: str):
        results = {evaluation.result_name(r["model"], r["split"], r["tta"]): r
                   for r in evaluation.read_results(results_dir)}
        if not results:
            return gr.update(choices=[], value=None), None
        name = name if name in results else next(iter(results))
        fig = plots.confusion_heatmap(results[name], normalize == "row-normalised", labels == "FER+ majority")
        return gr.update(choices=list(results), value=name), fig

    with gr.Row():
        model = gr.Dropdown(choices(), label="Result", value=None)
        normalize = gr.Radio(["counts", "row-normalised"], value="counts", label="Show")
        labels = gr.Radio(["FER2013", "FER+ majority"], value="FER2013", label="True labels")
    heat = gr.Plot(label="Confusion matrix")
    for control in (model, normalize, labels):
        control.change(show, [model, normalize, labels], [model, heat], api_name=False)
    return (lambda: show(None, "counts", "FER2013")), [model, heat]


def evaluate_tab(pool: ModelPool, available: list[str]) -> ModelBoxes:
    import csv

    from fermm import evaluator, plots, userset

    def run(zip_path, models, detect, progress=gr.Progress()):
        if not zip_path:
            raise gr.Error("Please upload a zip of labelled face images.")
        if not models:
            raise gr.Error("Please choose at least one model.")
        try:
            labelled = userset.read_zip(zip_path)
        except userset.ZipError as e:
            raise gr.Error(f"This zip cannot be used: {e}.") from None
        metrics, rows, skipped = evaluator.evaluate_set(pool, models, labelled, bool(detect), progress)
        lines = [f"Evaluated {len(rows)} images."]
        lines += [f"- skipped {n}: {html.escape(reason)}" for reason, n in skipped.items()]
        table = [[m, f"{r['accuracy']:.1%}", f"{r['accuracy_ci95'][0]:.1%}-{r['accuracy_ci95'][1]:.1%}",
                  round(r["macro_f1"], 3), r["n"]] for m, r in metrics.items()]
        figs = [plots.confusion_heatmap({**r, "model": m, "split": "your set", "tta": "none"}) for m, r in metrics.items()]
        path = export_path("predictions.csv")
        with open(path, "w", newline="") as out:
            if rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return "\n".join(lines), table, figs[0] if figs else None, str(path)

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
            heat = gr.Plot(label="Confusion matrix (first model)")
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
    import atexit
    import contextlib
    import shutil
    import tempfile
    import time
    import uuid

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
    from fermm.cards import INTENDED_USE, LIMITS, OUT_OF_SCOPE

    gr.Markdown("\n\n".join([
        "## About fermm", INTENDED_USE, "### Out-of-scope uses", OUT_OF_SCOPE, "### Limits", LIMITS,
        "### Privacy", "Uploaded images are processed in memory and in Gradio's temporary cache, which is "
        "emptied regularly; they are not stored, logged or shared. The app sends no analytics or telemetry.",
        "### Data and licences", "FER2013 (Goodfellow et al., 2013; research and non-commercial use); FER+ votes "
        "(Microsoft, MIT); DAIR-AI emotion text (Saravia et al., 2018; educational and research use). Face "
        "detector: YuNet (OpenCV Zoo, MIT). Example photo: NASA astronaut portrait (public domain).",
        "### Model cards",
    ]))
    for pool in pools:
        for name in pool.names:
            with gr.Accordion(f"Model card: {name}", open=False):
                gr.Markdown(_card(pool, name))


def build_demo(pool: ModelPool | None = None, results_dir: str | Path | None = None,
               text_pool: ModelPool | None = None) -> gr.Blocks:
    """The whole app. Models are resolved once at start; each loads lazily and failures are shown."""
    from functools import partial

    from fermm.evaluation import RESULTS_DIR
    from fermm.fusion import load_weight
    from fermm.hub import offline_if_unreachable
    from fermm.models import list_models

    offline_if_unreachable()
    pool = pool or ModelPool()
    text_pool = text_pool or ModelPool(list_models("text"))
    text_models = text_pool.available()
    results_dir = Path(results_dir or RESULTS_DIR)
    statuses = pool.status()
    available = [s.name for s in statuses if s.available]
    unavailable = {s.name: s.reason for s in statuses if not s.available}
    with gr.Blocks(title="fermm: facial emotion recognition", delete_cache=(600, 900),
                   analytics_enabled=False) as demo:
        gr.Markdown("# fermm: facial expression recognition\nUpload a photo: each face is found, boxed and "
                    "classified by every model. Read the About tab before drawing conclusions.")
        with gr.Tab("Predict"):
            status_table, refresh, models, text_model = predict_tab(
                pool, available, unavailable, text_pool, text_models, load_weight(results_dir))
        with gr.Tab("Accuracy"):
            load_accuracy, accuracy_outputs = accuracy_tab(results_dir)
        with gr.Tab("Confusion"):
            load_confusion, confusion_outputs = confusion_tab(results_dir)
        with gr.Tab("Evaluate"):
            eval_models = evaluate_tab(pool, available)
        with gr.Tab("About"):
            about_tab([pool, text_pool])
        # models that become available (a new checkpoint, the Hub back) are offered after Refresh or a page load
        offered = gr.State({"image": available, "text": text_models, "declined": [[], []]})
        choices = ([offered, models, text_model, eval_models], [offered, models, text_model, eval_models])
        offer = partial(_offered, pool, text_pool)
        demo.load(partial(_page_load, pool, text_pool), choices[0], [status_table, *choices[1]], api_name=False,
                  show_progress="hidden")
        refresh.click(lambda: _refreshed_status(pool, text_pool), None, status_table, api_name="model_status").then(
            offer, *choices, api_name=False, show_progress="hidden")
        demo.load(load_accuracy, None, accuracy_outputs)
        demo.load(load_confusion, None, confusion_outputs)
    demo.queue(default_concurrency_limit=4, max_size=64)
    return demo

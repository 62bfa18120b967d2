"""The Gradio app: Predict, Accuracy, Confusion and About tabs. ``app.py`` calls :func:`build_demo`.

Privacy: uploads live only in Gradio's temporary cache, which ``delete_cache`` empties; nothing is
logged or sent anywhere (analytics are switched off before gradio is imported: :mod:`fermm.serve`).
"""
from __future__ import annotations

import html
import json
import logging
from functools import partial
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from fermm import faces as facelib
from fermm.evaluation.plots import grouped_bars_spec
from fermm.hub import offline_if_unreachable
from fermm.labels import FER7
from fermm.models import list_models
from fermm.paths import ASSETS, CHECKPOINTS, RESULTS_DIR
from fermm.serve.bodylimit import BodyLimit
from fermm.serve import memory
from fermm.serve.components import MAX_UPLOAD_MB, FileImage, ModelBoxes, ModelMenu, user_error
from fermm.serve.explain import overlay, saliency
from fermm.serve.fusion import load_weight
from fermm.serve.predict import ImageResult, ModelPool, predict_image
from fermm.serve.tabs import about_tab, accuracy_tab, confusion_tab, evaluate_tab

log = logging.getLogger(__name__)
EXAMPLES = ASSETS / "examples"
MAX_UPLOAD = f"{MAX_UPLOAD_MB}mb"
SESSIONS = 200
MAX_BODY = (MAX_UPLOAD_MB * 4 // 3 + 2) * 2**20  # an upload, or an inline base64 image (4/3 of its size), + slack


def launch_options(sessions: int = SESSIONS) -> dict[str, object]:
    """``demo.launch`` arguments, fresh each time (Gradio writes into ``app_kwargs``). Gradio keeps a copy of
    every block's config per session (~170 KB here) for 10,000 sessions by default: +1.7 GB under sustained
    load (bench/load.py --soak), and nothing here needs long-lived session state. Uploads are capped by
    Gradio, every request body by :class:`fermm.serve.bodylimit.BodyLimit`."""
    return {"max_file_size": MAX_UPLOAD, "state_session_capacity": sessions,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY)]}}


def _rows(result: ImageResult) -> list[list]:
    """One row per face and model (+ the fused row): face, model, probabilities..., top label; and a row
    for the text's reading (its mass moved onto FER-7; top = its own label)."""
    rows = []
    if result.text:
        t = result.text
        rows.append(["text", f"{t.model} (text)", t.top, *[round(t.fer7[lab], 3) for lab in FER7]])
    for face in result.faces:
        joint = {f"{m} + text (CLIP joint)": p for m, p in face.joint.items()}
        for model, probs in {**face.probs, **joint, "fused": face.fused}.items():
            if not probs:
                continue
            cells = [round(probs.get(lab, float("nan")), 3) for lab in FER7]
            rows.append([face.index, model, max(probs, key=probs.get), *cells])
    return rows


def _status(result: ImageResult, n_models: int, has_image: bool = True) -> str:
    lines = []
    if result.text:
        t = result.text
        reading = f"Text ({html.escape(t.model)}): **{t.top}** ({t.probs[t.top]:.0%})"
        lines.append(reading + (": it names no emotion, so it barely changes the faces' answers." if
                                t.top == "neutral" else "."))
        if result.faces:
            lines.append(f"Each face's fused result weighs the text at {t.weight * t.strength:.2f}: its weight "
                         f"{t.weight:.2f} times the share of its reading that is an emotion ({t.strength:.0%}).")
        else:
            lines.append("**Text-only result**: no face was classified.")
    if has_image and not result.faces:
        lines.append("**No face found.** Tick *Treat the whole image as one face* to classify the image as it is.")
    elif result.faces and result.whole_image:
        lines.append("The whole image was classified as one face.")
    elif result.faces:
        tops = ", ".join(f"face {f.index}: **{_top_label(f)}**" for f in result.faces if f.top)
        lines.append(f"Found {len(result.faces)} face(s). " + tops)
    lines += [f"- {html.escape(n)}" for n in result.notes]
    if result.unavailable:
        lines.append("\nUnavailable models:")
        lines += [f"- `{n}`: {html.escape(r)}" for n, r in result.unavailable.items()]
    if n_models == 0 and has_image:
        lines.append("\nNo model is selected: showing detected faces only.")
    return "\n".join(lines)


def _top_label(face) -> str:
    """The fused answer with its confidence, e.g. "happy 98%"."""
    return f"{face.top} {face.fused[face.top]:.0%}"


def _figure(result: ImageResult):
    """The fused probabilities per face (and the text's reading) as grouped bars."""
    from gradio.components.plot import PlotData  # lazy: a heavy import, paid only when this runs

    series = [(f"text ({result.text.model})", FER7, [result.text.fer7[lab] for lab in FER7])] if result.text else []
    series += [(f"face {f.index}", FER7, [f.fused[lab] for lab in FER7]) for f in result.faces if f.fused]
    title = "Fused probabilities per face" + (" and the text's reading" if result.text else "")
    spec = grouped_bars_spec(series, title)
    return PlotData(type="plotly", plot=json.dumps(spec))


def _explanations(result: ImageResult, pool: ModelPool, max_faces: int = 5) -> list[tuple]:
    """(overlay, caption) for each face and model: what drove that model's top class."""
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
            raise user_error("Please upload a photo (or paste one, or use the webcam), or type a sentence.")
        with facelib.one_at_a_time_if_big(upload):
            return answer(upload, text, models, whole_image, explain, text_model)

    def answer(upload: str | bytes | None, text: str, models: list[str], whole_image: bool, explain: bool,
               text_model: str | None):
        image = None
        if upload is not None:  # a path, or bytes from a data: URL
            try:
                image = facelib.load_image(upload, work_pixels=facelib.WORK_PIXELS)
            except facelib.ImageError as e:
                raise user_error(f"This file cannot be used: {e}.") from None
        result = predict_image(image, pool, models or [], whole_image=bool(whole_image), text=text,
                               text_pool=text_pool, text_model=text_model, text_weight=text_weight)
        if image is None:
            return None, _rows(result), _figure(result), _status(result, len(models or []), False), _shown([])
        labels = [_top_label(f) for f in result.faces] if result.faces and result.faces[0].fused else None
        boxed = facelib.draw_boxes(image, [facelib.Face(f.box, f.score) for f in result.faces], labels, fit=1024)
        rows, figure, status = _rows(result), _figure(result), _status(result, len(models or []))
        gallery = _explanations(result, pool) if explain else []
        del image, result
        memory.trim()  # a photo's pixels and the models' buffers are freed: hand their pages back
        return boxed, rows, figure, status, _shown(gallery)
    return predict


def refusals_in_words(predict):
    """``predict`` for the page: a refused request clears the outputs and says why in the answer box (and a toast)."""
    def classify(*args):
        try:
            return predict(*args)
        except gr.Error as e:
            gr.Warning(e.message, title="Not classified")
            return None, None, None, f"**Not classified**: {html.escape(e.message)}", _shown([])
    return classify


# after Classify, bring the answer into view when it is not (on a phone the results column sits below the inputs)
SCROLL_TO_ANSWER = """() => { const el = document.getElementById('fermm-answer');
  if (el) { const r = el.getBoundingClientRect();
    if (r.top < 0 || r.top > window.innerHeight - 120) el.scrollIntoView({behavior: 'instant', block: 'start'}); } }"""


def upload_message(upload: str | bytes | None) -> str:
    """Said as soon as a file is chosen, not after Classify: whether it can be used, and why not."""
    if upload is None:
        return ""
    try:
        facelib.load_image(upload, work_pixels=facelib.WORK_PIXELS)
    except facelib.ImageError as e:
        return f"**This file cannot be used**: {html.escape(str(e))}. Please choose another photo."
    return ""


def _shown(gallery: list) -> dict:
    """The explanations, and their box only when there are some (an empty gallery takes 250 px)."""
    return gr.update(value=gallery, visible=bool(gallery))


def _status_rows(*pools: ModelPool) -> list[list]:
    return _rows_of([s for p in pools for s in p.status()])


CLIP_FAMILY = ("clip_zeroshot", "clip_linear", "clip_finetune", "coop", "text_clip")


def _rows_of(statuses: list) -> list[list]:
    """Availability in plain words: no exception names or server paths (those go to the server log)."""
    return [[s.name, "yes" if s.available else "no", plain_source(s.source),
             "" if s.available else plain_reason(s.name, s.reason)] for s in statuses]


def plain_source(source: str) -> str:
    if source == "not configured":
        return source
    path = Path(source)
    if path.is_absolute() or source.startswith("."):
        return "bundled with the app" if path.parent == CHECKPOINTS else f"local folder {path.name}"
    return f"Hugging Face Hub: {source}"


def plain_reason(name: str, reason: str) -> str:
    """Why a model is unavailable, for a person; the full error is in the server log."""
    if name in CLIP_FAMILY or "CLIP" in reason:
        return "downloads pretrained CLIP weights from the Hugging Face Hub; not available offline"
    if "no source configured" in reason:
        return f"not bundled with the app; set FERMM_MODEL_{name.upper()} to your Hub repo or folder to use it"
    if "offline" in reason or "could not be downloaded" in reason:
        return "not on this machine, and the Hugging Face Hub cannot be reached"
    if "no such model folder" in reason or "config.json" in reason:
        return "its model folder is missing or incomplete"
    return "could not be loaded (details in the server log)"


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
            text = gr.Textbox(label="Optional text, English only (a caption, what the person said)", max_lines=4,
                              max_length=20_000)
            button = gr.Button("Classify", variant="primary")  # high up: the answer appears beside it, in view
            with gr.Accordion("Models and options", open=False):
                text_model = ModelMenu(text_models, value=text_models[0] if text_models else None,
                                       label="Text model", visible=bool(text_models))
                models = ModelBoxes(available, value=available, label="Models")
                whole = gr.Checkbox(label="Treat the whole image as one face (for already-cropped faces)")
                explain = gr.Checkbox(label="Explain: show what drove each prediction (Grad-CAM / saliency)")
            examples = sorted(str(p) for p in EXAMPLES.glob("*.jpg"))
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[image])
        with gr.Column():
            status = gr.Markdown(elem_id="fermm-answer")  # the answer first, in words
            boxed = gr.Image(label="Faces found", type="pil", interactive=False, format="jpeg")
            chart = gr.Plot(label="Fused result")
    table = gr.Dataframe(headers=["face", "model", "top", *FER7], label="Probabilities per face and model",
                         interactive=False)
    gallery = gr.Gallery(label="Explanations (red: what the model relied on most)", columns=6, height="auto",
                         visible=False)
    with gr.Accordion("Model availability", open=False):
        status_table = gr.Dataframe(headers=["model", "available", "from", "why not"], interactive=False)
        refresh = gr.Button("Refresh", size="sm")
    image.upload(upload_message, image, status, api_name=False, show_progress="hidden")
    predict = make_predict_fn(pool, text_pool, text_weight)
    inputs, outputs = [image, text, models, whole, explain, text_model], [boxed, table, chart, status, gallery]
    # the API's /predict raises on a refused request (clients get the error); the page's Classify says why in the
    # answer box and a toast instead, so no "Error" badge covers the outputs
    gr.Button(visible=False).click(predict, inputs, outputs, api_name="predict", concurrency_limit=4,
                                   concurrency_id="predict")
    button.click(refusals_in_words(predict), inputs, outputs, api_name=False, concurrency_limit=4,
                 concurrency_id="predict").then(None, js=SCROLL_TO_ANSWER)
    return status_table, refresh, models, text_model


def build_demo(pool: ModelPool | None = None, results_dir: str | Path | None = None,
               text_pool: ModelPool | None = None) -> gr.Blocks:
    """The whole app. Models are resolved once at start; each loads lazily and failures are shown."""
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
            load_accuracy, accuracy_outputs = accuracy_tab(results_dir, pool.served)
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

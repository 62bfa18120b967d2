"""Writers that turn a FER DatasetDict into the other source formats (for round-trip tests)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fermm.labels import FER7

SPLIT_USAGE = {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"}


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("L"))


def write_kaggle_csv(ds, path: Path) -> Path:
    """fer2013.csv with rows in fer2013_row order (the original file's order)."""
    rows = []
    for split, usage in SPLIT_USAGE.items():
        for item in ds[split]:
            rows.append((item["fer2013_row"], item["label"], " ".join(map(str, pixels(item["image"]).ravel())), usage))
    rows.sort()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(r[1:] for r in rows)
    return path


def write_folders(ds, root: Path, with_usage_names: bool = True, ext: str = ".png") -> Path:
    """The Kaggle folder layout: train/<class>/Training_i, test/<class>/PublicTest_i | PrivateTest_i."""
    for split, usage in SPLIT_USAGE.items():
        part = "train" if split == "train" else "test"
        for i, item in enumerate(ds[split]):
            d = root / part / FER7[item["label"]]
            d.mkdir(parents=True, exist_ok=True)
            name = f"{usage}_{i}{ext}" if with_usage_names else f"{split}_{i}{ext}"
            item["image"].convert("L").save(d / name)
    return root


def write_ferplus_csv(ds, path: Path) -> Path:
    """A fer2013new.csv aligned with :func:`write_kaggle_csv`: row i holds the votes of that file's row i.
    Names are deliberately not row indices (as in the real file)."""
    rows = sorted((item["fer2013_row"], SPLIT_USAGE[split], item["ferplus_votes"])
                  for split in ds for item in ds[split])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                    "fear", "contempt", "unknown", "NF"])
        for orig_row, usage, votes in rows:
            w.writerow([usage, f"fer{orig_row:07d}.png"] + list(votes))
    return path


def split_signature(split) -> list[tuple[bytes, int]]:
    """Order-free content of a split: sorted (pixel bytes, label) pairs."""
    return sorted((pixels(item["image"]).tobytes(), item["label"]) for item in split)


def clip_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's real BPE vocabulary and merges, built from open_clip's bundled bpe_simple_vocab_16e6 (the
    same construction as open_clip's SimpleTokenizer, with the Hub's special-token spellings)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def make_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A small random CLIPModel (vocab_size 49408, so EOS pooling sees the real EOS id) with the real
    CLIP tokenizer, saved as a local folder that stands in for openai/clip-vit-base-patch32."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406,
                         eos_token_id=49407, pad_token_id=49407),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    vocab, merges = clip_bpe_vocab()
    CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(folder)
    return folder

"""Assemble the Hugging Face Space folder (app, package, requirements, small checkpoints, results) and
optionally push it.

    python spaces/build.py --output_dir build/space [--push_to_hub USER/fermm]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent

# What the Space needs, relative to the repo root; nothing else (no tests, runs or caches) is copied.
INCLUDE = ("app.py", "requirements.txt", "fermm", "checkpoints", "results")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi", ".DS_Store")
# a guard against bundling a research-sized model by mistake: the bundle is 84 MB with the int8 graphs (10 MB)
MAX_CHECKPOINT_MB = 100


def build(output_dir: Path, sources: dict[str, str] | None = None) -> Path:
    """Copy the Space's files into ``output_dir`` (emptied first), put the Space README on top, and write the
    models' sources (``model_sources.json``, read by ``fermm.models.registry.resolve``) when given."""
    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    for name in INCLUDE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, output_dir / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, output_dir / name)
    shutil.copy2(ROOT / "spaces" / "README.md", output_dir / "README.md")
    if sources:
        (output_dir / "model_sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    size = sum(f.stat().st_size for f in (output_dir / "checkpoints").rglob("*") if f.is_file()) / 2**20 \
        if (output_dir / "checkpoints").exists() else 0
    if size > MAX_CHECKPOINT_MB:
        raise SystemExit(f"checkpoints/ is {size:.0f} MB; keep the Space's bundled models under {MAX_CHECKPOINT_MB} MB")
    return output_dir


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default=str(ROOT / "build" / "space"))
    p.add_argument("--push_to_hub", metavar="REPO_ID", help="push the folder as a Gradio Space")
    p.add_argument("--source", action="append", default=[], metavar="NAME=REPO[@REVISION]",
                   help="where the Space loads model NAME from: your pushed Hub repo, pinned to a revision if given "
                        "(repeat per model; models without a source use their bundled checkpoint or are unavailable)")
    args = p.parse_args(argv)
    bad = [s for s in args.source if "=" not in s or not s.split("=", 1)[1]]
    if bad:
        p.error(f"--source takes NAME=USER/REPO[@REVISION], not {bad[0]!r}")
    args.sources = dict(s.split("=", 1) for s in args.source)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = build(Path(args.output_dir), args.sources)
    print(f"built {folder}")
    if args.push_to_hub:
        from fermm.hub import push_folder

        try:
            url = push_folder(folder, args.push_to_hub, repo_type="space", space_sdk="gradio",
                              message="Update the fermm Space")
        except Exception as e:  # the built folder stays for a retry
            print(f"error: push failed ({type(e).__name__}: {e}); the folder {folder} is intact", file=sys.stderr)
            return 1
        print(f"pushed to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

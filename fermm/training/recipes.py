"""Recipes as files: ``python train/text.py --config train/recipes/text_minilm.yaml`` reads a YAML file whose keys
are the script's flags (without the dashes); flags on the command line override it. One parser for every
training script, so a recipe is checked like a command line: an unknown key is an error, not a silent default.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import yaml


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--config FILE.yaml`` supplying the defaults."""
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="a recipe: YAML with the flags as keys (e.g. train/recipes/text_minilm.yaml); flags "
                             "given on the command line override it")
    pre = argparse.ArgumentParser(add_help=False)  # --config alone first: the recipe may give required flags
    pre.add_argument("--config")
    pre = pre.parse_known_args(argv)[0]
    if pre.config:
        recipe = read(pre.config, parser)
        parser.set_defaults(**recipe)
        for action in parser._actions:  # a required flag the recipe gives is no longer required
            if action.dest in recipe:
                action.required = False
    return parser.parse_args(argv)


def read(path: str | Path, parser: argparse.ArgumentParser) -> dict:
    """The recipe's settings, checked against ``parser``'s flags."""
    try:
        recipe = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        parser.error(f"--config {path}: {e.strerror or e}")
    except yaml.YAMLError as e:
        parser.error(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})")
    if not isinstance(recipe, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values")
    known = {a.dest for a in parser._actions} - {"help", "config"}
    unknown = sorted(set(recipe) - known)
    if unknown:
        parser.error(f"--config {path}: unknown settings {', '.join(unknown)} (this script's flags: see --help)")
    return recipe

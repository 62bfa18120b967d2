"""Recipes as files: ``python train/text.py --config train/recipes/text_minilm.yaml`` reads a YAML file whose keys
are the script's flags (without the dashes); flags on the command line override it. One parser for every
training script, and a recipe is checked like a command line: an unknown key, a value outside a flag's choices or
of the wrong type is an error, not a silent default.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import yaml


def parse_script(doc: str, argv: Sequence[str] | None, *adders: Callable[[argparse.ArgumentParser], None],
                 **defaults) -> argparse.Namespace:
    """A training script's arguments: its docstring as the help, the flags ``adders`` declare, the script's own
    ``defaults``, then :func:`parse`."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for add in adders:
        add(p)
    p.set_defaults(**defaults)
    return parse(p, argv)


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
    args = parser.parse_args(argv)
    if getattr(args, "sync_to_hub", None) and args.sync_to_hub == getattr(args, "push_to_hub", None):
        parser.error(f"--sync_to_hub {args.sync_to_hub}: give the run state a repo of its own; --push_to_hub "
                     "replaces every file of its repo with the final model")
    return args


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
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    unknown = sorted(set(recipe) - set(actions))
    if unknown:
        parser.error(f"--config {path}: unknown settings {', '.join(unknown)} (this script's flags: see --help)")
    return {k: _checked(v, actions[k], f"--config {path}: {k}", parser) for k, v in recipe.items()}


def _checked(value, action: argparse.Action, where: str, parser: argparse.ArgumentParser):
    """A recipe value held to its flag's rules, as argparse holds a command line: type, choices, on/off flags."""
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            parser.error(f"{where}: expected true or false, not {value!r}")
        return value
    values = value if isinstance(value, list) else [value]
    if action.type is not None:
        try:
            values = [action.type(v) if isinstance(v, str) else v for v in values]
        except (TypeError, ValueError) as e:
            parser.error(f"{where}: {e}")
    if action.choices is not None:
        bad = [v for v in values if v not in action.choices]
        if bad:
            hint = " (YAML reads a bare no/yes as false/true: quote it)" if isinstance(bad[0], bool) else ""
            parser.error(f"{where}: {bad[0]!r} is not one of {', '.join(map(str, action.choices))}{hint}")
    return values if isinstance(value, list) else values[0]

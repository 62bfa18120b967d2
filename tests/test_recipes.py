"""Recipes as files: ``--config FILE.yaml`` for every training script."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT

RECIPES = sorted((ROOT / "train" / "recipes").glob("*.yaml"))


def test_a_recipe_gives_defaults_and_the_command_line_overrides(tmp_path):
    import train.text as script

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: gru\ndata: dair\nepochs: 7\nlr: 0.003\noutput_dir: runs/from_recipe\n")
    args = script.parse_args(["--config", str(recipe)])
    assert (args.model, args.data, args.epochs, args.lr, args.output_dir) == ("gru", "dair", 7, 0.003, "runs/from_recipe")
    args = script.parse_args(["--config", str(recipe), "--epochs", "2", "--output_dir", "elsewhere"])
    assert (args.epochs, args.output_dir, args.lr) == (2, "elsewhere", 0.003)


@pytest.mark.parametrize("text,message", [
    ("model: gru\nepoch: 3\n", "unknown settings epoch"),
    ("- just\n- a list\n", "expected a mapping"),
    ("model: [gru\n", "not valid YAML"),
    ("data: goemotions + dair\n", "'goemotions + dair' is not one of"),
    ("mixed_precision: no\n", "False is not one of no, bf16 (YAML reads a bare no/yes as false/true: quote it)"),
    ("epochs: three\n", "epochs: invalid literal"),
    ("ema: fast\n", "ema: could not convert"),
])
def test_a_bad_recipe_is_refused_with_the_reason(tmp_path, capsys, text, message):
    import train.text as script

    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(SystemExit) as e:
        script.parse_args(["--config", str(recipe), "--output_dir", "x"])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_missing_recipe_is_one_line(capsys):
    import train.glove_cnn as script

    with pytest.raises(SystemExit):
        script.parse_args(["--config", "no/such.yaml", "--output_dir", "x"])
    assert "--config no/such.yaml: No such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_parses_and_names_its_bundle(path: Path):
    import train.text as script

    args = script.parse_args(["--config", str(path)])
    assert args.output_dir.endswith(path.stem)

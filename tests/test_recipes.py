"""Recipes as files: ``--config FILE.yaml`` for every training script."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

RECIPES = sorted((ROOT / "train" / "recipes").rglob("*.yaml"))
BUNDLED = {p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.json").exists()}


def _script(path: Path) -> str:
    """The training script a recipe's header names in its command (``python train/X.py --config <this file>``)."""
    found = re.search(r"python train/(\w+)\.py --config (\S+)", path.read_text())
    assert found, f"{path.name}: its header should show the command that runs it"
    assert ROOT / found[2] == path, f"{path.name}: its command names {found[2]}"
    return found[1]


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
    ("sync_to_hub: me/run\npush_to_hub: me/run\n", "--sync_to_hub me/run: give the run state a repo of its own"),
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


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(ROOT / "train" / "recipes")) for p in RECIPES])
def test_every_shipped_recipe_parses_with_the_script_its_header_names(path: Path):
    args = importlib.import_module(f"train.{_script(path)}").parse_args(["--config", str(path)])
    assert args.output_dir.startswith("runs/")


def test_a_lineage_starts_from_its_earlier_stages_or_bundled_models():
    """glove_cnn's stages: each starts from, or learns from, a run an earlier stage (or the ensemble step its
    header shows) makes, or a bundled model; so the files reproduce the lineage in order."""
    made = set()
    for path in sorted((ROOT / "train" / "recipes" / "glove_cnn").glob("*.yaml")):
        args = importlib.import_module(f"train.{_script(path)}").parse_args(["--config", str(path)])
        made |= set(re.findall(r"--output_dir (runs/\w+)", path.read_text()))  # steps run from the header
        for source in (getattr(args, "init_from", None), getattr(args, "teacher", None)):
            assert source is None or source in made or Path(source).name in BUNDLED, f"{path.name}: {source}"
        made.add(args.output_dir)
    assert made >= {"runs/glove_vgg11_r2_s0", "runs/glove_vgg11_fp5_s2", "runs/ensemble_r7", "runs/glove_vgg11_bakd_s0"}

"""Scripts end an expected failure with one readable line and status 2; real bugs keep their traceback."""
from __future__ import annotations

import pytest

from fermm import cli


def test_expected_failures_print_one_line(capsys):
    def missing(argv):
        raise FileNotFoundError("runs/x: no such model folder")

    assert cli.run(missing, []) == 2
    err = capsys.readouterr().err
    assert err == "error: runs/x: no such model folder\n"


def test_bugs_keep_their_traceback():
    def bug(argv):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        cli.run(bug, [])


def test_the_missions_coop_command_offline_fails_in_one_line(tmp_path, capsys, monkeypatch):
    """`python train/coop.py --push_to_hub USER/fermm-coop` with no pretrained CLIP reachable."""
    import train.coop as coop

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cli.run(coop.main, ["--output_dir", str(tmp_path / "coop"), "--push_to_hub", "USER/fermm-coop"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: pretrained CLIP weights") and "\n" not in err
    assert "Traceback" not in err

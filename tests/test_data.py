"""fermm.data: every source format gives the same dataset; FER+ join; report; bad input; the CLI."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from fermm import data
from fermm.data import report as datareport
from fermm.data import sources
from fermm.data.__main__ import main as data_cli
from fermm.data.ferplus import FERPLUS_VOTE_COLUMNS
from fermm.labels import FER7, FERPLUS8
from tests.conftest import FER_TINY
from tests.helpers import split_signature, write_ferplus_csv, write_folders, write_kaggle_csv


def test_parquet_fixture_schema(fer_tiny):
    assert {s: len(fer_tiny[s]) for s in data.SPLITS} == {"train": 35, "validation": 14, "test": 14}
    assert fer_tiny["train"].features["label"].names == list(FER7)
    assert fer_tiny["train"].features["ferplus_label"].names == list(FERPLUS8)
    img = fer_tiny["train"][0]["image"]
    assert img.size == (48, 48)


def test_csv_source_equals_parquet(fer_tiny, tmp_path):
    ds = data.load_fer(write_kaggle_csv(fer_tiny, tmp_path / "fer2013.csv"))
    for s in data.SPLITS:
        assert split_signature(ds[s]) == split_signature(fer_tiny[s])
        # the CSV knows row positions: they are the line order of the file
        assert sorted(ds[s]["fer2013_row"]) == ds[s]["fer2013_row"]


def test_folder_source_equals_csv_source(fer_tiny, tmp_path):
    from_csv = data.load_fer(write_kaggle_csv(fer_tiny, tmp_path / "fer2013.csv"))
    from_folders = data.load_fer(write_folders(fer_tiny, tmp_path / "folders"))
    for s in data.SPLITS:
        assert split_signature(from_folders[s]) == split_signature(from_csv[s])


def test_folders_without_usage_split_validation_from_train_only(fer_tiny, tmp_path):
    root = write_folders(fer_tiny, tmp_path / "f", with_usage_names=False)
    a = data.load_fer(root, val_fraction=0.2, seed=3)
    b = data.load_fer(root, val_fraction=0.2, seed=3)
    assert split_signature(a["validation"]) == split_signature(b["validation"])  # seeded
    # test = everything under test/, untouched; validation + train = everything under train/
    held_out = split_signature(fer_tiny["validation"]) + split_signature(fer_tiny["test"])
    assert split_signature(a["test"]) == sorted(held_out)
    assert sorted(split_signature(a["train"]) + split_signature(a["validation"])) == split_signature(fer_tiny["train"])
    # stratified: every class of train appears in validation
    assert set(a["validation"]["label"]) == set(range(7))


def test_ferplus_join_by_row_position(fer_tiny, tmp_path):
    csv_path = write_kaggle_csv(fer_tiny, tmp_path / "fer2013.csv")
    ds = data.load_fer(csv_path, ferplus=write_ferplus_csv(fer_tiny, tmp_path / "fer2013new.csv"))
    for s in data.SPLITS:  # every image gets its own votes back, matched by pixels
        truth = {px: v for px, v in zip(_pixel_keys(fer_tiny[s]), fer_tiny[s]["ferplus_votes"])}
        assert [truth[px] for px in _pixel_keys(ds[s])] == ds[s]["ferplus_votes"]
        assert ds[s]["ferplus_label"] == [data.ferplus_majority(v) for v in ds[s]["ferplus_votes"]]
    folders = data.load_fer(write_folders(fer_tiny, tmp_path / "f"))
    with pytest.raises(data.DataError, match="no fer2013.csv row positions"):
        data.load_fer(tmp_path / "f", ferplus=tmp_path / "fer2013new.csv")
    assert "ferplus_votes" not in folders["train"].column_names


def _pixel_keys(split) -> list[bytes]:
    return [np.asarray(im.convert("L")).tobytes() for im in split["image"]]


def test_ferplus_majority_rule():
    # columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF
    assert data.ferplus_majority([0, 10, 0, 0, 0, 0, 0, 0, 0, 0]) == FERPLUS8.index("happy")
    assert data.ferplus_majority([4, 0, 0, 1, 3, 2, 0, 0, 0, 0]) == -1  # 4 of 9 kept votes: no majority
    assert data.ferplus_majority([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]) == FERPLUS8.index("neutral")  # singles dropped
    assert data.ferplus_majority([0, 0, 0, 0, 0, 0, 0, 3, 0, 0]) == FERPLUS8.index("contempt")
    assert data.ferplus_majority([0, 0, 0, 0, 0, 0, 0, 0, 0, 10]) == -1  # not a face
    assert data.ferplus_majority([0, 0, 0, 0, 0, 0, 0, 0, 6, 4]) == -1  # unknown
    assert data.ferplus_majority(None) == -1


def test_ferplus_votes_from_parquet_columns(fer_tiny):
    # the fixture keeps the shared parquet's ferplus_* columns; they become ferplus_votes/label
    votes = fer_tiny["train"]["ferplus_votes"]
    assert all(len(v) == 10 for v in votes)
    assert fer_tiny["train"]["ferplus_label"] == [data.ferplus_majority(v) for v in votes]


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_duplicate_report_on_constructed_case():
    from datasets import DatasetDict

    a, b, c, d = (np.full((48, 48), v, dtype=np.uint8) for v in (10, 20, 30, 40))
    train = {"image": [_png(a), _png(a), _png(b), _png(b), _png(c)], "label": [0, 0, 1, 2, 3]}
    val = {"image": [_png(a), _png(d)], "label": [0, 4]}
    test = {"image": [_png(b), _png(d), _png(d)], "label": [5, 4, 4]}
    ds = DatasetDict({s: sources._dataset(cols, False, False) for s, cols in
                      (("train", train), ("validation", val), ("test", test))})
    r = datareport.build_report(ds)
    assert r["splits"]["train"]["duplicate_groups"] == 2
    assert r["splits"]["train"]["images_in_duplicate_groups"] == 4
    assert r["splits"]["train"]["distinct"] == 3
    assert r["splits"]["train"]["conflicting_groups"] == 1  # b labelled 1 and 2
    assert r["splits"]["test"]["duplicate_groups"] == 1 and r["splits"]["test"]["conflicting_groups"] == 0
    assert r["cross_split"]["train/validation"] == {"shared_distinct_images": 1, "shared_with_different_labels": 0}
    assert r["cross_split"]["train/test"] == {"shared_distinct_images": 1, "shared_with_different_labels": 1}
    assert r["cross_split"]["validation/test"]["shared_distinct_images"] == 1
    dropped, n = datareport.drop_cross_split_duplicates(ds)
    assert n == 4 and len(dropped["train"]) == 1  # only c is unique to train
    text = datareport.format_report(r)
    assert "2 groups holding 4 images" in text and "train/test: 1 shared, 1 of them labelled differently" in text


def test_report_measures_ferplus_agreement_on_constructed_votes():
    from datasets import DatasetDict

    px = np.zeros((48, 48), dtype=np.uint8)
    # vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    votes = [[2, 8, 0, 0, 0, 0, 0, 0, 0, 0],   # happy, 8 of 10 votes agree
             [6, 0, 0, 4, 0, 0, 0, 0, 0, 0],   # sad, but most votes say neutral
             [0, 0, 0, 0, 0, 0, 0, 5, 5, 0]]   # angry: only contempt/unknown votes, so left out
    cols = {"image": [_png(px)] * 3, "label": [3, 4, 0], "ferplus_votes": votes, "ferplus_label": [1, 0, 7]}
    ds = DatasetDict({"train": sources._dataset(cols, False, True)})
    r = datareport.build_report(ds)["ferplus"]["train"]
    assert r == {"n": 3, "with_votes": 2, "argmax_agrees": 1, "mean_vote_share_of_label": pytest.approx(0.6)}
    text = datareport.format_report(datareport.build_report(ds))
    assert "train: 2 of 3 with votes; the most-voted class (first on ties) is the label for 1 (50.0%)" in text
    assert "FER+" not in datareport.format_report(datareport.build_report(
        DatasetDict({"train": ds["train"].remove_columns(["ferplus_votes", "ferplus_label"])})))


# --------------------------------------------------------------------------- bad input

GOOD_PIXELS = " ".join(["7"] * 2304)


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)
    return path


BAD_ROWS = [
    (["3", " ".join(["7"] * 100), "Training"], "wrong pixel count 100"),
    (["9", GOOD_PIXELS, "Training"], "unknown label 9"),
    (["x", GOOD_PIXELS, "Training"], "is not an integer"),
    (["3", GOOD_PIXELS, "Sometimes"], "unknown Usage 'Sometimes'"),
    (["3", GOOD_PIXELS.replace("7", "a", 1), "Training"], "pixels are not integers"),
    (["3", GOOD_PIXELS.replace("7", "300", 1), "Training"], "outside 0..255"),
    (["3", GOOD_PIXELS], "malformed row"),
]


@pytest.mark.parametrize("row,message", BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_bad_csv_row_names_the_row(tmp_path, row, message):
    path = _write_csv(tmp_path / "f.csv", [["0", GOOD_PIXELS, "Training"], row])
    with pytest.raises(data.DataError, match=f"row 3: .*{message}"):
        data.load_fer(path)


def test_skip_bad_counts_every_row(tmp_path):
    rows = [["0", GOOD_PIXELS, "Training"], ["1", GOOD_PIXELS, "PublicTest"], ["2", GOOD_PIXELS, "PrivateTest"]]
    rows += [r for r, _ in BAD_ROWS]
    skips = data.SkipLog()
    ds = data.load_fer(_write_csv(tmp_path / "f.csv", rows), skip_bad=True, skips=skips)
    n_out = sum(len(ds[s]) for s in data.SPLITS)
    assert n_out == 3 and skips.total == len(BAD_ROWS)
    assert n_out + skips.total == len(rows)  # nothing dropped silently
    assert "skipped 7 rows" in skips.summary()


def test_unreadable_image_file_is_named(fer_tiny, tmp_path):
    root = write_folders(fer_tiny, tmp_path / "f")
    bad = root / "train" / "happy" / "Training_broken.jpg"
    bad.write_bytes(b"this is text, not a JPEG")
    with pytest.raises(data.DataError, match="Training_broken.jpg: unreadable image"):
        data.load_fer(root)
    skips = data.SkipLog()
    ds = data.load_fer(root, skip_bad=True, skips=skips)
    assert skips.total == 1 and len(ds["train"]) == len(fer_tiny["train"])


def test_unknown_class_folder_and_missing_sources(tmp_path):
    (tmp_path / "train" / "bored").mkdir(parents=True)
    (tmp_path / "test").mkdir()
    with pytest.raises(data.DataError, match="bored: unknown class folder"):
        data.load_fer(tmp_path)
    with pytest.raises(data.DataError, match="no such file or folder"):
        data.load_fer(tmp_path / "nothing" / "here.csv")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(data.DataError, match="unsupported file type"):
        data.load_fer(tmp_path / "notes.txt")


def test_csv_with_wrong_header(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(data.DataError, match="expected columns"):
        data.load_fer(p)


# --------------------------------------------------------------------------- arrays, text, CLI


def test_to_arrays_shapes_and_values(fer_tiny):
    x, y = data.to_arrays(fer_tiny["validation"])
    assert x.shape == (14, 48, 48) and x.dtype == np.uint8
    assert y.tolist() == fer_tiny["validation"]["label"]
    assert np.array_equal(x[0], np.asarray(fer_tiny["validation"][0]["image"]))


def test_text_txt_and_errors(tmp_path):
    for name in ("train.txt", "val.txt", "test.txt"):
        (tmp_path / name).write_text("text;label\ni feel great;joy\ni am so scared;fear\n")
    ds = data.load_text(tmp_path)
    assert ds["validation"]["text"] == ["i feel great", "i am so scared"]
    assert ds["train"].features["label"].names[ds["train"]["label"][1]] == "fear"
    (tmp_path / "test.txt").write_text("no label here\n")
    with pytest.raises(data.DataError, match="test.txt: line 1"):
        data.load_text(tmp_path)


def test_prepare_cli_writes_parquet_and_card(fer_tiny, tmp_path, capsys):
    out = tmp_path / "out"
    csv_path = write_kaggle_csv(fer_tiny, tmp_path / "fer2013.csv")
    assert data_cli(["prepare", "--source", str(csv_path), "--output_dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "test.parquet", "train.parquet", "validation.parquet"]
    again = data.load_fer(out)
    for s in data.SPLITS:
        assert split_signature(again[s]) == split_signature(fer_tiny[s])
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "license: other" in card and "PrivateTest" in card
    assert "| train | 35 |" in card and "Goodfellow" in card
    assert "wrote" in capsys.readouterr().out


def test_report_cli_and_bad_source_exit_code(capsys):
    assert data_cli(["report", "--source", str(FER_TINY)]) == 0
    out = capsys.readouterr().out
    assert "train: 0 groups holding 0 images; 35 distinct" in out
    assert data_cli(["report", "--source", "/no/such/folder"]) == 2
    assert "error:" in capsys.readouterr().err


def test_ferplus_fer7_targets_are_vote_distributions_over_fer7(fer_tiny):
    from fermm.labels import FER7, FERPLUS_COLUMNS

    split = fer_tiny["train"]
    t = data.ferplus_fer7_targets(split)
    assert t.shape == (len(split), 7) and t.dtype == np.float32
    sums = t.sum(1)
    assert np.all((np.abs(sums - 1) < 1e-6) | (sums == 0))
    votes = np.array(split["ferplus_votes"][0], dtype=float)
    cols = list(FERPLUS_VOTE_COLUMNS)
    expect = np.zeros(7)
    for c, v in zip(cols, votes):
        if FERPLUS_COLUMNS.get(c) in FER7:  # contempt, unknown and not-a-face votes are dropped
            expect[FER7.index(FERPLUS_COLUMNS[c])] += v
    assert np.allclose(t[0], expect / expect.sum())
    with pytest.raises(data.DataError, match="no FER\\+ votes"):
        data.ferplus_fer7_targets(split.remove_columns(["ferplus_votes"]))

"""fermm.models.wordvec: text and npz formats, label vectors, clear errors."""
import numpy as np
import pytest

from fermm.labels import FER7, FERPLUS8
from fermm.models.wordvec import WordVectors, default_vectors, label_vectors


def test_glove_and_word2vec_text_and_npz_round_trip(tmp_path):
    glove = tmp_path / "g.txt"
    glove.write_text("happy 1 0 0\nglad 0 1 0\nsad 0 0 1\n")
    w2v = tmp_path / "w.txt"
    w2v.write_text("3 3\nhappy 1 0 0\nglad 0 1 0\nsad 0 0 1\n")
    a, b = WordVectors.load(glove), WordVectors.load(w2v)
    assert a.dim == b.dim == 3 and np.array_equal(a["glad"], b["glad"])
    a.save_npz(tmp_path / "v.npz")
    c = WordVectors.load(tmp_path / "v.npz")
    assert np.array_equal(c["sad"], a["sad"]) and "angry" not in c


def test_label_vector_is_the_mean_of_present_words(tmp_path):
    p = tmp_path / "g.txt"
    p.write_text("happy 1 0\nglad 0 1\nsad 3 3\n")
    t = WordVectors.load(p)
    vec = label_vectors(["happy", "sad"], t, {"happy": ("happy", "joyful", "glad"), "sad": ("sad",)})
    assert np.allclose(vec, [[0.5, 0.5], [3, 3]])
    with pytest.raises(ValueError, match=r"no vector for: disgust \(tried disgust, yuck\)"):
        label_vectors(["happy", "disgust"], t, {"happy": ("happy",), "disgust": ("disgust", "yuck")})


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        WordVectors.load(tmp_path / "none.txt")
    p = tmp_path / "bad.txt"
    p.write_text("happy 1 0\nsad 1\n")
    with pytest.raises(ValueError, match="line 2: 1 values, expected 2"):
        WordVectors.load(p)


def test_shipped_vectors_cover_every_fer_plus_label():
    table = default_vectors()
    vec = label_vectors(FERPLUS8, table)
    assert vec.shape == (8, 300)
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    sim = unit @ unit.T
    assert sim[FER7.index("happy"), FER7.index("sad")] < 0.9  # distinct labels stay distinct

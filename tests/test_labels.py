"""fermm.labels: label sets and the mappings between them."""
import numpy as np
import pytest

from fermm import labels as L


def test_label_sets_and_orders():
    assert L.FER7 == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert L.FERPLUS8[:7] == L.FER7 and L.FERPLUS8[7] == "contempt"
    assert L.TEXT6 == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert set(L.FERPLUS_COLUMNS.values()) == set(L.FERPLUS8)


def test_text_to_fer_mapping_is_total_and_consistent():
    m = np.array(L.text6_to_fer7_matrix())
    assert m.shape == (6, 7) and np.allclose(m.sum(1), 1)
    for fer, texts in L.FER7_TO_TEXT6.items():
        for t in texts:
            assert L.TEXT6_TO_FER7[t] == fer
    assert not m[:, L.FER7.index("disgust")].any() and not m[:, L.FER7.index("neutral")].any()


def test_every_label_has_words_and_prompt_names():
    for lab in L.FERPLUS8 + L.TEXT6:
        assert L.LABEL_WORDS[lab]
    for lab in L.FERPLUS8:
        assert L.PROMPT_NAMES[lab]
    assert all("{}" in t for t in L.PROMPT_TEMPLATES)


def test_index_of_error_lists_choices():
    assert L.index_of(L.FER7, "sad") == 4
    with pytest.raises(ValueError, match="unknown label 'bored'; expected one of angry"):
        L.index_of(L.FER7, "bored")

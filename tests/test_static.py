"""siamtext.static: distil a tower into a static encoder, encode, save and load."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("model2vec")

from siamtext.static import StaticEncoder, distill_static  # noqa: E402


@pytest.fixture(scope="module")
def static(tiny_model) -> StaticEncoder:
    """The tiny BERT distilled once for the module (16 PCA dimensions)."""
    return tiny_model.distill_static(pca_dims=16)


def test_distilled_encoder_shape_dtype_and_norms(static, corpus):
    emb = static.encode(corpus[:50])
    assert static.embedding_dim == 16
    assert emb.shape == (50, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one = static.encode(corpus[3])
    assert one.shape == (16,)
    np.testing.assert_allclose(one, emb[3], atol=1e-6)
    as_torch = static.encode(corpus[:5], convert_to="torch")
    assert isinstance(as_torch, torch.Tensor) and as_torch.dtype == torch.float32
    np.testing.assert_allclose(as_torch.numpy(), emb[:5], atol=1e-6)


def test_a_sentence_is_the_normalised_mean_of_its_token_vectors(static):
    text = "I lost my card at the bar"
    ids = static.static_model.tokenize([text])[0]
    assert len(ids) > 1
    mean = static.static_model.embedding[ids].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(static.encode(text), mean / np.linalg.norm(mean), atol=1e-5)


def test_batch_size_and_order_do_not_change_rows(static, corpus):
    texts = corpus[:40]
    a = static.encode(texts, batch_size=7)
    b = static.encode(texts[::-1], batch_size=1024)[::-1]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_empty_inputs(static):
    assert static.encode([]).shape == (0, 16)
    assert static.encode([], convert_to="torch").shape == (0, 16)
    # no known token: the zero vector, not a division by zero
    assert not np.any(static.encode([""]))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sentences": [1, "a"]}, TypeError, r"sentences\[0\] must be a string"),
    ({"sentences": None}, TypeError, "sentences must be a string or a list of strings"),
    ({"sentences": ["a"], "batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ({"sentences": ["a"], "convert_to": "list"}, ValueError, "convert_to must be one of"),
])
def test_encode_errors(static, kwargs, error, match):
    with pytest.raises(error, match=match):
        static.encode(**kwargs)


def test_similarity_is_the_cosine_matrix(static, corpus):
    emb = static.encode(corpus[:6])
    sim = static.similarity(corpus[:2], corpus[:6])
    assert sim.shape == (2, 6)
    np.testing.assert_allclose(sim, emb[:2] @ emb.T, atol=1e-5)
    np.testing.assert_allclose(static.similarity(emb[:2], torch.from_numpy(emb)), sim, atol=1e-5)
    with pytest.raises(ValueError, match=r"a embeddings must have shape \(n, 16\)"):
        static.similarity(np.ones((2, 3), dtype=np.float32), corpus[:1])


def test_distillation_leaves_the_tower_alone(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.transformer.state_dict().items()}
    vocab_size = tiny_model.transformer.config.vocab_size
    distill_static(tiny_model, pca_dims=None)
    after = tiny_model.transformer.state_dict()
    assert tiny_model.transformer.config.vocab_size == vocab_size
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_pooling_follows_the_tower(tiny_bert_dir):
    from siamtext import SiamText

    cls_tower = SiamText(tiny_bert_dir, pooling="cls", device="cpu")
    assert cls_tower.distill_static(pca_dims=8).static_model.config["pooling"] == "first"


def test_sentencepiece_tower_distils(tiny_albert_dir, corpus):
    from siamtext import SiamText

    static = SiamText(tiny_albert_dir, device="cpu").distill_static(pca_dims=8)
    emb = static.encode(corpus[:10])
    assert emb.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"pca_dims": 0}, ValueError, "pca_dims must be a positive integer"),
    ({"sif_coefficient": 1.5}, ValueError, r"sif_coefficient must be a number in \(0, 1\)"),
    ({"pooling": "max"}, ValueError, "pooling must be one of"),
    ({"quantize_to": "int8"}, ValueError, "quantize_to must be one of"),
])
def test_distill_errors_before_work(tiny_model, kwargs, error, match):
    with pytest.raises(error, match=match):
        distill_static(tiny_model, **kwargs)


def test_distill_needs_a_siamtext():
    with pytest.raises(TypeError, match="model must be a SiamText, got str"):
        distill_static("sentence-transformers/all-MiniLM-L6-v2")


def test_save_load_round_trip_and_model2vec_reads_the_folder(static, corpus, tmp_path):
    from model2vec import StaticModel

    folder = static.save_pretrained(tmp_path / "static")
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= names
    assert not [p for p in folder.rglob("*") if p.suffix in {".pkl", ".bin", ".pt"}]
    loaded = StaticEncoder.from_pretrained(folder)
    np.testing.assert_array_equal(loaded.encode(corpus[:20]), static.encode(corpus[:20]))
    theirs = StaticModel.from_pretrained(folder).encode(corpus[:20])
    np.testing.assert_allclose(theirs, static.encode(corpus[:20]), atol=1e-6)


def test_from_pretrained_refuses_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no static model folder"):
        StaticEncoder.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors, tokenizer.json missing"):
        StaticEncoder.from_pretrained(tmp_path)


def test_wrapper_needs_a_static_model():
    with pytest.raises(TypeError, match="static_model must be a model2vec.StaticModel"):
        StaticEncoder(object())


def test_missing_extra_names_it(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "model2vec.distill", None)
    with pytest.raises(ImportError, match=r"distill_static\(\) needs model2vec, which is not "
                                          r"installed: pip install 'siamtext\[static\]'"):
        tiny_model.distill_static()
    monkeypatch.setitem(sys.modules, "model2vec", None)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (tmp_path / name).write_text("")
    with pytest.raises(ImportError, match=r"pip install 'siamtext\[static\]'"):
        StaticEncoder.from_pretrained(tmp_path)


def test_importing_siamtext_does_not_import_model2vec():
    code = ("import sys, siamtext, siamtext.classify; "
            "print(any(m.split('.')[0] == 'model2vec' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

import logging
import random

import numpy as np
import pytest
import torch

from siamtext import ModelNotFoundError, SiamText
from siamtext.pooling import max_pooling

SENTENCES = [
    "where is my new card",
    "I lost my card yesterday",
    "what's the weather tomorrow",
    "",
    "play some jazz please, something relaxing for the evening",
    "thanks a lot",
    "cancel my subscription",
]


def test_encode_shapes_and_types(tiny_model):
    dim = tiny_model.embedding_dim
    assert dim == 32
    assert tiny_model.encode("hello").shape == (dim,)
    emb = tiny_model.encode(SENTENCES)
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32
    assert emb.shape == (len(SENTENCES), dim)
    as_torch = tiny_model.encode(SENTENCES, convert_to="torch")
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (len(SENTENCES), dim)
    assert np.allclose(as_torch.numpy(), emb)


def test_encode_empty_list_gives_empty_matrix(tiny_model):
    assert tiny_model.encode([]).shape == (0, 32)
    assert tiny_model.encode([], convert_to="torch").shape == (0, 32)


def test_encode_normalises_by_default(tiny_model):
    norms = np.linalg.norm(tiny_model.encode(SENTENCES), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)
    raw = tiny_model.encode(SENTENCES, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True),
                       tiny_model.encode(SENTENCES), atol=1e-5)


def test_embedding_does_not_depend_on_batch_or_neighbours(tiny_model, corpus):
    texts = corpus[:40] + SENTENCES
    reference = tiny_model.encode(texts, batch_size=1)
    for batch_size in (3, 16, 64):
        assert np.abs(tiny_model.encode(texts, batch_size=batch_size) - reference).max() < 1e-5
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    shuffled = tiny_model.encode([texts[i] for i in order], batch_size=8)
    assert np.abs(shuffled - reference[order]).max() < 1e-5


def test_encode_matches_manual_mean_pooling(tiny_model):
    text = "I lost my card yesterday"
    ids = tiny_model.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = tiny_model.transformer(**ids).last_hidden_state[0]
    expected = hidden.mean(dim=0)
    expected = expected / expected.norm()
    assert np.allclose(tiny_model.encode(text), expected.numpy(), atol=1e-6)


def test_max_and_cls_pooling(tiny_bert_dir):
    text = ["my card is lost", "hi"]
    batch_cls = SiamText(tiny_bert_dir, pooling="cls", normalize=False, device="cpu")
    batch_max = SiamText(tiny_bert_dir, pooling="max", normalize=False, device="cpu")
    feats = batch_cls.tokenize(text)
    with torch.no_grad():
        hidden = batch_cls.transformer(**feats).last_hidden_state
    assert np.allclose(batch_cls.encode(text), hidden[:, 0].numpy(), atol=1e-6)
    assert np.allclose(batch_max.encode(text),
                       max_pooling(hidden, feats["attention_mask"]).numpy(), atol=1e-6)


def test_similarity_is_cosine(tiny_model):
    a, b = ["my card is lost", "hi"], ["where is my card"]
    sim = tiny_model.similarity(a, b)
    ea, eb = tiny_model.encode(a), tiny_model.encode(b)
    assert sim.shape == (2, 1) and isinstance(sim, np.ndarray)
    assert np.allclose(sim, ea @ eb.T, atol=1e-6)
    assert np.allclose(tiny_model.similarity(ea, eb), sim, atol=1e-6)
    as_tensor = tiny_model.similarity(torch.from_numpy(ea), torch.from_numpy(eb))
    assert isinstance(as_tensor, torch.Tensor)
    assert np.allclose(tiny_model.similarity("hi", "hi"), [[1.0]], atol=1e-6)


def test_long_text_is_truncated_with_one_warning(tiny_bert_dir, caplog):
    model = SiamText(tiny_bert_dir, device="cpu")
    assert model.max_seq_length == 64
    long = " ".join(["card"] * 500)
    with caplog.at_level(logging.WARNING, logger="siamtext.model"):
        first = model.encode([long, "hi"])
        model.encode([long])
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert np.allclose(first[0], model.encode(" ".join(["card"] * 62)), atol=1e-5)


def test_max_length_argument_truncates(tiny_model):
    text = "one two three four five six seven"
    short = tiny_model.encode(text, max_length=4)  # [CLS] + 2 tokens + [SEP]
    ids = tiny_model.tokenizer(text, truncation=True, max_length=4)["input_ids"]
    assert len(ids) == 4
    assert np.allclose(short, tiny_model.encode(tiny_model.tokenizer.decode(ids[1:3])), atol=1e-5)


def test_bf16_autocast_runs_and_stays_close(tiny_model):
    emb = tiny_model.encode(SENTENCES, precision="bf16")
    assert emb.dtype == np.float32
    assert np.abs(emb - tiny_model.encode(SENTENCES)).max() < 0.05


def test_forward_keeps_gradients_and_normalises(tiny_bert_dir):
    model = SiamText(tiny_bert_dir, device="cpu")
    out = model(**model.tokenize(["a card", "the weather"]))
    assert out.requires_grad
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-5)
    out.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("fixture", ["tiny_albert_dir", "tiny_t5_dir"])
def test_sentencepiece_models(fixture, request):
    folder = request.getfixturevalue(fixture)
    model = SiamText(folder, device="cpu")
    emb = model.encode(SENTENCES, batch_size=2)
    assert emb.shape == (len(SENTENCES), 32)
    assert np.abs(emb - model.encode(SENTENCES, batch_size=1)).max() < 1e-5
    if fixture == "tiny_t5_dir":
        assert type(model.transformer).__name__ == "T5EncoderModel"


def test_save_and_load_round_trip(tiny_bert_dir, tmp_path):
    model = SiamText(tiny_bert_dir, pooling="max", normalize=False, max_length=32, device="cpu")
    folder = model.save_pretrained(tmp_path / "saved")
    for name in ("model.safetensors", "config.json", "siamtext_config.json", "modules.json",
                 "sentence_bert_config.json", "1_Pooling/config.json", "tokenizer.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pkl"))
    loaded = SiamText.from_pretrained(folder, device="cpu")
    assert loaded.config.pooling == "max" and loaded.config.normalize is False
    assert loaded.max_seq_length == 32
    assert np.allclose(loaded.encode(SENTENCES), model.encode(SENTENCES), atol=1e-6)


def test_plain_transformers_checkpoint_defaults(tiny_bert_dir):
    # tiny_bert_dir has no siamtext or sentence-transformers files: mean pooling, normalised
    model = SiamText(tiny_bert_dir, device="cpu")
    assert model.config.pooling == "mean" and model.config.normalize is True


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    (None, "sentences must be a string or a list of strings, got NoneType"),
    (["ok", 3], r"sentences\[1\] must be a string, got int"),
    (["ok", None], r"sentences\[1\] must be a string, got NoneType"),
])
def test_encode_rejects_non_strings(tiny_model, bad, match):
    with pytest.raises(TypeError, match=match):
        tiny_model.encode(bad)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": -2}, "batch_size must be a positive integer, got -2"),
    ({"convert_to": "list"}, "convert_to must be one of"),
    ({"precision": "int8"}, "precision must be one of"),
    ({"max_length": 0}, "max_length must be a positive integer"),
])
def test_encode_rejects_bad_options(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.encode(["hi"], **kwargs)


def test_unknown_pooling_fails_before_loading(tmp_path):
    with pytest.raises(ValueError, match="pooling must be one of .*got 'sum'"):
        SiamText(tmp_path / "does-not-matter", pooling="sum")


def test_folder_without_model_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="is not a model folder: no model.safetensors"):
        SiamText(tmp_path)


def test_folder_with_only_pickled_weights_is_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelNotFoundError, match=r"only pickled weights \(pytorch_model.bin\)"):
        SiamText(tmp_path)


def test_missing_model_names_what_was_tried(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ModelNotFoundError) as err:
        SiamText(str(missing))
    message = str(err.value)
    assert "could not load model" in message and "local folder" in message
    assert "does not exist" in message and "not a valid repo id" in message


def test_unknown_hub_id_offline_names_what_was_tried(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match="Hugging Face cache/Hub"):
        SiamText("no-such-user/no-such-model-xyz")


def test_model_name_must_be_str_or_path():
    with pytest.raises(TypeError, match="model_name_or_path must be a str or Path, got int"):
        SiamText(3)


def test_tiny_fixture_tokenizer_knows_its_words(tiny_model):
    # guards the fixture: an all-[UNK] tokenizer would make every same-length text identical
    ids = tiny_model.tokenizer("my card is lost")["input_ids"]
    assert tiny_model.tokenizer.unk_token_id not in ids
    a, b = tiny_model.encode(["my card is lost", "play some jazz"])
    assert abs(float(a @ b)) < 0.999


# ---------------------------------------------------------------- reliability (issue 12)
def test_weights_with_nan_are_refused_at_load_naming_the_tensor(tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = SiamText(tiny_bert_dir, device="cpu").save_pretrained(tmp_path / "m")
    weights = load_file(folder / "model.safetensors")
    name = "encoder.layer.1.output.dense.weight"
    weights[name][3, 5] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"refusing to load .*'{name}' in .*model.safetensors "
                                         r"holds NaN or inf"):
        SiamText(folder, device="cpu")


def test_nan_weights_are_never_saved(tiny_bert_dir, tmp_path):
    model = SiamText(tiny_bert_dir, device="cpu")
    with torch.no_grad():
        model.transformer.pooler.dense.bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"refusing to save .*'pooler.dense.bias'"):
        model.save_pretrained(tmp_path / "m")
    assert not list(tmp_path.iterdir())


def test_save_over_a_folder_is_atomic_and_keeps_other_files(tiny_bert_dir, tmp_path):
    model = SiamText(tiny_bert_dir, device="cpu")
    folder = model.save_pretrained(tmp_path / "m")
    (folder / "checkpoints").mkdir()
    (folder / "notes.txt").write_text("mine")
    with torch.no_grad():
        model.transformer.pooler.dense.bias.add_(1.0)
    model.save_pretrained(folder)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "checkpoints").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left
    loaded = SiamText(folder, device="cpu")
    assert torch.equal(loaded.transformer.pooler.dense.bias, model.transformer.pooler.dense.bias)


def test_encode_halves_the_batch_on_out_of_memory(tiny_model, corpus, monkeypatch, caplog):
    texts = corpus[:25] + SENTENCES
    reference = tiny_model.encode(texts, batch_size=16)
    real_embed = tiny_model.embed
    sizes = []

    def embed(input_ids, attention_mask, **inputs):
        sizes.append(len(input_ids))
        if len(input_ids) > 4:
            raise MemoryError("simulated")
        return real_embed(input_ids, attention_mask, **inputs)

    monkeypatch.setattr(tiny_model, "embed", embed)
    with caplog.at_level(logging.WARNING, logger="siamtext.model"):
        result = tiny_model.encode(texts, batch_size=16)
    assert np.array_equal(result, reference)  # each piece padded like its whole batch
    assert sizes[:3] == [16, 8, 4] and set(sizes[3:]) <= {4, 1}
    assert caplog.text.count("ran out of memory") == 1

    # memory for one text: single-row kernels may round the last bit differently
    def embed_one(input_ids, attention_mask, **inputs):
        if len(input_ids) > 1:
            raise MemoryError("simulated")
        return real_embed(input_ids, attention_mask, **inputs)

    monkeypatch.setattr(tiny_model, "embed", embed_one)
    np.testing.assert_allclose(tiny_model.encode(texts, batch_size=16), reference, rtol=0,
                               atol=1e-6)

    monkeypatch.setattr(tiny_model, "embed", lambda *a, **k: (_ for _ in ()).throw(
        MemoryError("still")))
    with pytest.raises(MemoryError, match="still"):
        tiny_model.encode(texts[:3], batch_size=4)

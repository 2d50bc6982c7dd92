"""Loading by Hub id from a pre-populated Hugging Face cache with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import constants

from siamtext import ModelNotFoundError, SiamText
from siamtext.resolve import resolve_model_path

SHA = "0123456789abcdef0123456789abcdef01234567"
SENTENCES = ["where is my new card", "play some jazz", ""]


def add_to_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes], *,
                 sha: str = SHA, refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay files out as huggingface_hub does: content-addressed blobs, snapshot symlinks, refs."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    for rel, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(sha)
    return snapshot


def folder_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def cache(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    cache = tmp_path / "hub"
    add_to_cache(cache, "alice/tiny-bert", folder_files(tiny_bert_dir), refs=("main", "v1"))
    return cache


def test_load_by_repo_id_from_cache_offline(offline, cache, tiny_model):
    model = SiamText("alice/tiny-bert", cache_dir=cache, device="cpu")
    assert np.abs(model.encode(SENTENCES) - tiny_model.encode(SENTENCES)).max() < 1e-6
    assert model.model_name_or_path == "alice/tiny-bert"
    assert model.config.base_model == "alice/tiny-bert"


@pytest.mark.parametrize("revision", [None, "main", "v1", SHA])
def test_revisions_resolve_through_refs_and_snapshots(offline, cache, revision):
    folder = resolve_model_path("alice/tiny-bert", revision=revision, cache_dir=cache)
    assert folder == cache / "models--alice--tiny-bert" / "snapshots" / SHA
    assert (folder / "model.safetensors").is_file()


def test_default_cache_is_used(offline, cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert resolve_model_path("alice/tiny-bert").name == SHA


def test_unknown_revision_offline(offline, cache):
    with pytest.raises(ModelNotFoundError, match="Hugging Face cache/Hub: .*cached snapshot"):
        resolve_model_path("alice/tiny-bert", revision="v2", cache_dir=cache)


def test_repo_not_in_cache_offline_says_so(offline, tmp_path):
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE=0") as err:
        SiamText("alice/not-cached", cache_dir=tmp_path)
    assert "could not load model 'alice/not-cached'" in str(err.value)


def test_cached_repo_with_only_pickled_weights_is_refused(offline, tmp_path, tiny_bert_dir):
    files = {"config.json": tiny_bert_dir / "config.json",
             "pytorch_model.bin": b"\x80\x04 a pickle that must never be loaded"}
    add_to_cache(tmp_path, "alice/pickled", files)
    with pytest.raises(ModelNotFoundError, match=r"only pickled weights \(pytorch_model.bin\)"):
        SiamText("alice/pickled", cache_dir=tmp_path)


def test_repo_without_safetensors_names_the_repo(monkeypatch, tmp_path, tiny_bert_dir):
    """Downloading skips pickles, so the folder from the Hub has config but no weights."""
    snapshot = add_to_cache(tmp_path, "alice/bin-only",
                            {"config.json": tiny_bert_dir / "config.json"})
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    with pytest.raises(ModelNotFoundError, match="Hub repo 'alice/bin-only' has no safetensors "
                                                 "weights .* never downloads pickled"):
        resolve_model_path("alice/bin-only")


def test_download_skips_pickles_and_passes_options(monkeypatch, cache):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(cache / "models--alice--tiny-bert" / "snapshots" / SHA)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    resolve_model_path("alice/tiny-bert", revision="v1", token="hf_x", cache_dir=cache)
    (repo_id, kwargs), = calls
    assert repo_id == "alice/tiny-bert"
    assert kwargs["revision"] == "v1" and kwargs["token"] == "hf_x"
    assert kwargs["cache_dir"] == str(cache)
    for pattern in ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.joblib", "*.ckpt"):
        assert pattern in kwargs["ignore_patterns"]


def test_cached_repo_without_config_is_refused(offline, tmp_path, tiny_bert_dir):
    add_to_cache(tmp_path, "alice/no-config",
                 {"model.safetensors": tiny_bert_dir / "model.safetensors"})
    with pytest.raises(ModelNotFoundError, match="no config.json found"):
        resolve_model_path("alice/no-config", cache_dir=tmp_path)


def test_remote_code_does_not_run_unless_trusted(offline, tmp_path, tiny_bert_dir):
    marker = tmp_path / "EXECUTED"
    code = (f"open({str(marker)!r}, 'w').write('ran')\n"
            "from transformers import BertConfig\n"
            "class EvilConfig(BertConfig):\n    model_type = 'evil-bert'\n")
    config = ('{"model_type": "evil-bert", "hidden_size": 32, "auto_map": '
              '{"AutoConfig": "modeling_evil.EvilConfig", "AutoModel": "modeling_evil.Evil"}}')
    files = folder_files(tiny_bert_dir)
    files.update({"config.json": config.encode(), "modeling_evil.py": code.encode()})
    add_to_cache(tmp_path, "mallory/evil", files)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        SiamText("mallory/evil", cache_dir=tmp_path)
    assert not marker.exists()


def test_saved_model_pushed_to_the_cache_round_trips(offline, tmp_path, tiny_bert_dir):
    saved = SiamText(tiny_bert_dir, device="cpu", pooling="cls", normalize=False)
    folder = saved.save_pretrained(tmp_path / "saved")
    shutil.rmtree(folder / "2_Normalize", ignore_errors=True)
    add_to_cache(tmp_path / "hub", "alice/saved", folder_files(folder))
    loaded = SiamText("alice/saved", cache_dir=tmp_path / "hub", device="cpu")
    assert loaded.config.pooling == "cls" and loaded.config.normalize is False
    assert np.abs(loaded.encode(SENTENCES) - saved.encode(SENTENCES)).max() < 1e-6


def test_a_backend_file_comes_from_the_cache_with_the_model(offline, tmp_path, tiny_model,
                                                            caplog):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    exported = tmp_path / "exported"
    tiny_model.export("onnx", path=exported)
    cache = tmp_path / "hub"
    add_to_cache(cache, "alice/tiny-onnx", folder_files(exported))
    with caplog.at_level("WARNING"):
        model = SiamText("alice/tiny-onnx", cache_dir=cache, backend="onnx")
    assert model.backend == "onnx" and "exporting it now" not in caplog.text
    assert model._engine.path.name == "model.onnx"
    assert np.abs(model.encode(SENTENCES) - tiny_model.encode(SENTENCES)).max() <= 1e-4


def test_backend_files_of_a_hub_repo():
    from siamtext.backends import backend_files

    assert backend_files("torch", None) == ()
    assert backend_files("onnx", None) == ("onnx/model.onnx",)
    assert backend_files("onnx", "model_qint8_avx2.onnx") == ("onnx/model_qint8_avx2.onnx",)
    assert backend_files("openvino", None) == ("openvino/openvino_model.xml",
                                               "openvino/openvino_model.bin")


def test_a_backend_file_is_fetched_beside_the_model(monkeypatch, cache):
    snapshot = cache / "models--alice--tiny-bert" / "snapshots" / SHA
    fetched = []

    def fake_hf_hub_download(repo_id, filename, **kwargs):
        fetched.append((repo_id, filename, kwargs["revision"]))
        if filename.endswith(".bin"):
            raise huggingface_hub.errors.EntryNotFoundError("no such file")
        return str(snapshot / filename)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(snapshot))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    folder = resolve_model_path("alice/tiny-bert", revision="v1",
                                extra_files=("openvino/openvino_model.xml",
                                             "openvino/openvino_model.bin"))
    assert folder == snapshot  # a file the repo lacks is skipped, not an error
    assert fetched == [("alice/tiny-bert", "openvino/openvino_model.xml", "v1"),
                       ("alice/tiny-bert", "openvino/openvino_model.bin", "v1")]

"""Hostile inputs shared by the reliability tests and ``benchmarks/reliability_inputs.py``.

Texts: control, zero-width, right-to-left, emoji, combining marks, lone surrogates (not
Unicode: the one text siamtext refuses), 1 MB strings. Folders: a copy of a good model folder
with one hostile change each. Threads: run a call from 8 threads and compare with serial
results. Each check returns ``None`` when the outcome is right, else a short description.
"""

from __future__ import annotations

import json
import shutil
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# ---------------------------------------------------------------------- texts
SPECIALS = [
    "\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\r\n", "\t", " ", "\u00a0",
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",              # zero-width
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200f", "مرحبا بالعالم", "שלום",  # bidi
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\U0001f600" * 3, "a\u0301\u0301\u0301", "\u0e01\u0e34\u0e4a", "\ufffd", "\U0010ffff",
    "\uffff", "Ｆｕｌｌｗｉｄｔｈ", "𝕄𝕒𝕥𝕙", "你好世界", "I forgot my password",
]
ODD_TEXTS = {
    "empty": "",
    "control": "\x00\x01\x02\x1b\x7f" * 10,
    "zero_width": "\u200b\u200c\u200d\u2060\ufeff" * 20,
    "rtl": "\u202eevil.exe\u202c مرحبا שלום \u2067abc\u2069",
    "emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467\U0001f3f3\ufe0f\u200d\U0001f308" * 10,
    "combining": "e" + "\u0301" * 2000,
    "whitespace": " \t\n\r\u00a0\u3000" * 50,
    "mixed": "".join(SPECIALS),
}
MB = 1 << 20
SURROGATE = "ok \ud800 text"  # what bytes decoded with errors="surrogateescape" can hold


def megabyte_texts() -> dict[str, str]:
    """1 MB strings (in characters) of several kinds."""
    return {
        "ascii_words": ("reset my password " * (MB // 18 + 1))[:MB],
        "one_long_word": "a" * MB,
        "zero_width": "\u200b" * MB,
        "emoji": "\U0001f600" * MB,
        "rtl": ("مرحبا " * (MB // 6 + 1))[:MB],
    }


def text_strategy(max_pieces: int = 8, surrogates: bool = False):
    """Hypothesis strategy for one hostile string: random code points mixed with
    :data:`SPECIALS`; with ``surrogates`` it may hold lone surrogates too."""
    from hypothesis import strategies as st

    chars = st.characters() if surrogates else st.characters(blacklist_categories=("Cs",))
    piece = st.one_of(st.text(chars, max_size=12), st.sampled_from(SPECIALS))
    return st.lists(piece, max_size=max_pieces).map("".join)


def has_surrogate(texts: Any) -> bool:
    items = [texts] if isinstance(texts, str) else texts
    return any(0xD800 <= ord(c) <= 0xDFFF for t in items for c in t)


def check_embeddings(emb: Any, n: int, dim: int, normalized: bool = True) -> str | None:
    """``None`` if ``emb`` is an ``(n, dim)`` finite float array (unit rows, or zero rows
    for a text with no tokens, when ``normalized``), else what is wrong."""
    emb = np.asarray(emb)
    if emb.shape != (n, dim):
        return f"shape {emb.shape}, expected {(n, dim)}"
    if not np.isfinite(emb).all():
        return "non-finite values"
    if normalized and n:
        norms = np.linalg.norm(emb, axis=1)
        if not np.all((np.abs(norms - 1) < 1e-3) | (norms < 1e-6)):
            return f"norms {norms.min():.4f}..{norms.max():.4f}"
    return None


def outcome(fn: Callable[[], Any], check: Callable[[Any], str | None] | None = None,
            refuse: bool = False) -> str | None:
    """Run ``fn``: right when it returns a value ``check`` accepts, or raises a
    ``ValueError``/``TypeError`` with a message; with ``refuse`` it must raise one."""
    try:
        value = fn()
    except (ValueError, TypeError) as err:
        return None if str(err) else f"{type(err).__name__} without a message"
    except Exception as err:  # noqa: BLE001 - any other exception is the failure measured
        return f"crashed: {type(err).__name__}: {str(err)[:200]}"
    if refuse:
        return "accepted input it should refuse"
    return check(value) if check is not None else None


# ---------------------------------------------------------------------- folders
MARKER_NAME = "REMOTE_CODE_RAN"


def _copy(good: Path, folder: Path) -> Path:
    shutil.copytree(good, folder)
    return folder


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def hostile_model_folders(good: Path, base: Path) -> dict[str, tuple[Path, str]]:
    """Copies of the model folder ``good`` (a plain transformers folder with
    ``model.safetensors``, ``config.json`` and ``tokenizer_config.json``), one hostile change
    each, under ``base``: name -> (folder, the file the refusal must name).

    Every path that leads outside points at a real, loadable file or folder under ``base``,
    so a loader that followed it would succeed instead of refusing. ``base / MARKER_NAME``
    appears if any folder's code runs.
    """
    base.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    marker = base / MARKER_NAME
    code = (f"open({str(marker)!r}, 'w').write('ran')\n"
            "from transformers import BertConfig, BertModel, BertTokenizer\n"
            "class EvilConfig(BertConfig):\n    pass\n"
            "class Evil(BertModel):\n    pass\n"
            "class EvilTokenizer(BertTokenizer):\n    pass\n")
    outside_model = _copy(good, base / "outside_model")
    shutil.copy(good / "model.safetensors", base / "outside.safetensors")

    d = base / "only_pickles"
    d.mkdir()
    shutil.copy(good / "config.json", d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")  # a tiny pickle
    out["only_pickles"] = (d, "pytorch_model.bin")

    d = _copy(good, base / "auto_map_config")
    (d / "modeling_evil.py").write_text(code)
    _edit_json(d / "config.json", auto_map={"AutoConfig": "modeling_evil.EvilConfig",
                                            "AutoModel": "modeling_evil.Evil"})
    out["auto_map_config"] = (d, "config.json")

    d = _copy(good, base / "auto_map_unknown_type")
    (d / "modeling_evil.py").write_text(code)
    _edit_json(d / "config.json", model_type="evil-bert",
               auto_map={"AutoConfig": "modeling_evil.EvilConfig",
                         "AutoModel": "modeling_evil.Evil"})
    out["auto_map_unknown_type"] = (d, "config.json")

    d = _copy(good, base / "auto_map_tokenizer")
    (d / "modeling_evil.py").write_text(code)
    _edit_json(d / "tokenizer_config.json",
               auto_map={"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]})
    out["auto_map_tokenizer"] = (d, "tokenizer_config.json")

    for name, key, value in [
        ("tokenizer_file_escape", "tokenizer_file", "../outside_model/tokenizer.json"),
        ("vocab_file_absolute", "vocab_file", str(outside_model / "tokenizer.json")),
        ("fast_tokenizer_files_escape", "fast_tokenizer_files",
         ["../outside_model/tokenizer.4.0.json"]),
    ]:
        d = _copy(good, base / name)
        (d / "tokenizer.json").unlink()
        _edit_json(d / "tokenizer_config.json", **{key: value})
        out[name] = (d, "tokenizer_config.json")
    shutil.copy(outside_model / "tokenizer.json", outside_model / "tokenizer.4.0.json")

    for name, path in [("modules_json_escape", "../outside_model"),
                       ("modules_json_absolute", str(outside_model))]:
        d = base / name
        d.mkdir()
        shutil.copy(good / "config.json", d)
        shutil.copy(good / "model.safetensors", d)
        (d / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": path,
             "type": "sentence_transformers.models.Transformer"}]))
        out[name] = (d, "modules.json")

    d = base / "pooling_escape"
    _copy(good, d)
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "../outside_model",
         "type": "sentence_transformers.models.Pooling"}]))
    out["pooling_escape"] = (d, "modules.json")

    d = _copy(good, base / "shard_escape")
    (d / "model.safetensors").unlink()
    names = list(_safetensors_header(good / "model.safetensors"))
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: "../outside.safetensors" for n in names}}))
    out["shard_escape"] = (d, "model.safetensors.index.json")

    d = _copy(good, base / "weights_field_escape")
    _edit_json(d / "config.json", transformers_weights="../outside.safetensors")
    out["weights_field_escape"] = (d, "config.json")

    whole = (good / "model.safetensors").read_bytes()
    for name, size in [("truncated_safetensors", len(whole) // 2),
                       ("truncated_header", 100), ("truncated_to_4_bytes", 4)]:
        d = _copy(good, base / name)
        (d / "model.safetensors").write_bytes(whole[:size])
        out[name] = (d, "model.safetensors")

    d = _copy(good, base / "config_not_json")
    (d / "config.json").write_text("{not json")
    out["config_not_json"] = (d, "config.json")
    return out


def _safetensors_header(path: Path) -> dict:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    return header


def hostile_classifier_folders(intent_folder: Path, dedup_folder: Path, base: Path
                               ) -> dict[str, tuple[Path, str, str]]:
    """Copies of a saved IntentClassifier / DuplicateDetector, one hostile change each:
    name -> (folder, "intent" or "dedup", the file the refusal must name)."""
    from safetensors.torch import load_file, save_file

    out: dict[str, tuple[Path, str, str]] = {}
    tensors_name, config_name = "intent_classifier.safetensors", "intent_classifier.json"

    d = _copy(intent_folder, base / "intent_dim_mismatch")
    t = load_file(str(d / tensors_name))
    save_file({"examples": t["examples"][:, :-4].contiguous(),
               "example_classes": t["example_classes"]}, str(d / tensors_name))
    out["intent_dim_mismatch"] = (d, "intent", tensors_name)

    d = _copy(intent_folder, base / "intent_extra_label")
    payload = json.loads((d / config_name).read_text())
    _edit_json(d / config_name, classes=payload["classes"] + ["ghost"])
    out["intent_extra_label"] = (d, "intent", tensors_name)

    d = _copy(intent_folder, base / "intent_missing_label")
    _edit_json(d / config_name, classes=payload["classes"][:-1])
    out["intent_missing_label"] = (d, "intent", tensors_name)

    d = _copy(intent_folder, base / "intent_truncated_tensors")
    raw = (d / tensors_name).read_bytes()
    (d / tensors_name).write_bytes(raw[: len(raw) // 2])
    out["intent_truncated_tensors"] = (d, "intent", tensors_name)

    d = _copy(intent_folder, base / "intent_only_pickles")
    (d / tensors_name).unlink()
    (d / "intent_classifier.pkl").write_bytes(b"\x80\x02}q\x00.")
    out["intent_only_pickles"] = (d, "intent", tensors_name)

    d = _copy(intent_folder, base / "intent_encoder_auto_map")
    (d / "encoder" / "modeling_evil.py").write_text(
        f"open({str(base / MARKER_NAME)!r}, 'w').write('ran')\n")
    _edit_json(d / "encoder" / "config.json", auto_map={"AutoModel": "modeling_evil.Evil"})
    out["intent_encoder_auto_map"] = (d, "intent", "config.json")

    d = _copy(intent_folder, base / "intent_json_broken")
    (d / config_name).write_text('{"kind": "IntentClassifier", ')
    out["intent_json_broken"] = (d, "intent", config_name)

    dedup_name = "duplicate_detector.json"
    for name, change in [
        ("dedup_three_labels", {"classifier": {"classes": [0, 1, 2]}}),
        ("dedup_threshold_out_of_range", {"threshold": 5.0}),
        ("dedup_bad_calibration", {"classifier": {"calibration_": {"method": "platt"}}}),
    ]:
        d = _copy(dedup_folder, base / name)
        payload = json.loads((d / dedup_name).read_text())
        for key, value in change.items():
            if isinstance(value, dict) and isinstance(payload.get(key), dict):
                payload[key].update(value)
            else:
                payload[key] = value
        (d / dedup_name).write_text(json.dumps(payload))
        out[name] = (d, "dedup", dedup_name)
    return out


def check_refused(load: Callable[[], Any], file_name: str, marker: Path) -> str | None:
    """``None`` when ``load()`` raises an error whose message names ``file_name``, and no
    code ran; else what went wrong."""
    try:
        load()
    except Exception as err:  # noqa: BLE001 - the type is part of what is checked below
        if marker.exists():
            return "the folder's code ran"
        if not isinstance(err, (ValueError, OSError)):
            return f"{type(err).__name__} (not ValueError/OSError): {str(err)[:160]}"
        if file_name not in str(err):
            return f"message does not name {file_name}: {str(err)[:160]}"
        return None
    return "loaded" + (" and the folder's code ran" if marker.exists() else "")


# ---------------------------------------------------------------------- threads
def run_threads(fn: Callable[[int], Any], n_threads: int = 8, calls: int = 4) -> list[Any]:
    """``fn(i)`` for ``i < n_threads * calls`` from ``n_threads`` threads, started together;
    results in ``i`` order. An exception in any call is raised here."""
    results: list[Any] = [None] * (n_threads * calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for c in range(calls):
                i = t * calls + c
                results[i] = fn(i)
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return results

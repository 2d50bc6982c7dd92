"""Read and write the sentence-transformers folder layout.

A sentence-transformers folder lists its modules in ``modules.json``: a Transformer (whose
files sit at the folder root or in a subfolder), a Pooling module with its own
``config.json``, and optionally a Normalize module. siamtext writes the long-standing layout
(``sentence_transformers.models.*`` module types and the ``pooling_mode_*_tokens`` keys),
which every sentence-transformers release since 2.x reads, and reads both that layout and
the newer one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from siamtext.folder_checks import path_inside, read_json_file

MODULES_NAME = "modules.json"

# Pooling modes of sentence-transformers that siamtext computes the same way.
_ST_POOLING = {"mean": "mean", "mean_tokens": "mean", "cls": "cls", "cls_token": "cls",
               "max": "max", "max_tokens": "max"}


@dataclass
class STLayout:
    """What siamtext needs from a sentence-transformers folder."""

    transformer_dir: Path
    pooling: str
    normalize: bool
    max_length: int | None


def is_sentence_transformers_folder(folder: Path) -> bool:
    """Whether ``folder`` has a sentence-transformers ``modules.json``."""
    return (folder / MODULES_NAME).is_file()


def _read_json(path: Path) -> dict:
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _pooling_from_config(cfg: dict, path: Path) -> str:
    if isinstance(cfg.get("pooling_mode"), str):  # sentence-transformers >= 6
        mode = cfg["pooling_mode"]
        if mode not in _ST_POOLING:
            raise ValueError(f"{path}: pooling_mode {mode!r} is not supported by siamtext; "
                             f"supported: {sorted(set(_ST_POOLING.values()))}")
        return _ST_POOLING[mode]
    modes = [name for name in ("mean_tokens", "cls_token", "max_tokens",
                               "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
             if cfg.get(f"pooling_mode_{name}")]
    if len(modes) != 1 or modes[0] not in _ST_POOLING:
        raise ValueError(f"{path}: siamtext supports exactly one of mean, cls or max pooling, "
                         f"the folder asks for {modes or 'none'}")
    return _ST_POOLING[modes[0]]


def read_layout(folder: Path) -> STLayout:
    """Parse a sentence-transformers folder.

    Raises:
        ValueError: If the folder holds modules siamtext cannot reproduce (Dense layers,
            weighted-mean pooling, ...): loading it anyway would give other embeddings; or
            if ``modules.json`` is malformed or names a path outside the folder (refused
            before anything there is opened).
    """
    modules_path = folder / MODULES_NAME
    modules = read_json_file(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{modules_path} must hold a list of module objects")
    transformer_dir: Path | None = None
    pooling = "mean"
    normalize = False
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = path_inside(folder, module.get("path", ""), modules_path, "module path")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            pooling = _pooling_from_config(_read_json(path / "config.json"), path)
        elif kind == "Normalize":
            normalize = True
        else:
            raise ValueError(
                f"{folder}: module {module.get('type')!r} is not supported by siamtext "
                "(supported: Transformer, Pooling with mean/cls/max, Normalize)"
            )
    if transformer_dir is None:
        raise ValueError(f"{folder}: modules.json lists no Transformer module")
    max_length = None
    st_config = transformer_dir / "sentence_bert_config.json"
    if st_config.is_file():
        max_length = _read_json(st_config).get("max_seq_length")
    return STLayout(transformer_dir, pooling, normalize, max_length)


def write_layout(folder: Path, *, pooling: str, normalize: bool, max_length: int,
                 dimension: int, versions: dict[str, str]) -> None:
    """Write the sentence-transformers files for a model saved at the root of ``folder``."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    _write_json(folder / MODULES_NAME, modules)
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": max_length, "do_lower_case": False})
    (folder / "1_Pooling").mkdir(exist_ok=True)
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dimension,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    _write_json(folder / "config_sentence_transformers.json", {
        "__version__": versions,
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

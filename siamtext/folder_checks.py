"""Checks that a model folder is safe to load, run before any of its files is used.

A model folder is data from someone else. Before siamtext hands it to ``transformers`` it
checks that:

* no file names a path outside the folder (``modules.json`` module paths, the shards of a
  ``model.safetensors.index.json``, the ``*_file`` entries of ``tokenizer_config.json``):
  absolute paths and ``..`` are refused before anything is opened there;
* no file asks for the folder's own Python code (``auto_map`` in ``config.json`` or
  ``tokenizer_config.json``) unless the caller passed ``trust_remote_code=True``; without it
  ``transformers`` would quietly load the stock class of the ``model_type`` instead, which
  gives other embeddings;
* every safetensors file is whole: its header parses and its tensors end where the file does
  (a truncated download fails here, naming the file, not deep inside a loader).

Each refusal is a ``ValueError`` whose message starts with the offending file. Symbolic
links are followed as the operating system does (the Hugging Face cache is built from them).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path, PurePosixPath, PureWindowsPath

TRANSFORMER_CONFIGS = ("config.json", "tokenizer_config.json")
WEIGHT_INDEX = "model.safetensors.index.json"
_MAX_HEADER = 100_000_000  # the safetensors format's own limit on the JSON header


def read_json_file(path: Path) -> object:
    """Parse a JSON file, naming it when it is not valid JSON or not UTF-8 text."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON file: {err}") from None


def path_inside(folder: Path, relative: object, source: Path, what: str = "path") -> Path:
    """``folder / relative``, refusing a path that could lead out of ``folder``.

    Args:
        folder: The model folder.
        relative: The path as written in ``source``.
        source: The file that holds the path (for the message).
        what: What the path is, for the message (``"module path"``).

    Raises:
        ValueError: If ``relative`` is not a string, is absolute, or has a ``..`` part.
    """
    if not isinstance(relative, str):
        raise ValueError(f"{source}: {what} must be a string, got {type(relative).__name__} "
                         f"{relative!r:.60}")
    posix = PurePosixPath(relative.replace("\\", "/"))  # either separator, on any OS
    if posix.is_absolute() or PureWindowsPath(relative).drive or ".." in posix.parts:
        raise ValueError(f"{source}: {what} {relative!r} leads outside the model folder "
                         f"{folder}; only paths inside it are read")
    return folder / relative


def check_safetensors(path: Path) -> None:
    """Check that ``path`` is a whole safetensors file, reading only its header.

    Raises:
        ValueError: Naming the file, if the header is cut short or unreadable, or the
            tensors it lists run past the end of the file.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is truncated or not a safetensors file: {size} bytes, "
                             "fewer than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise ValueError(f"{path} is truncated or not a safetensors file: its header "
                             f"claims {n} bytes, the file has {size}")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a safetensors file: unreadable header ({err})"
                             ) from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"{path} is not a safetensors file: tensor {name!r} has no "
                             "valid data_offsets")
        end = max(end, offsets[1])
    if 8 + n + end > size:
        raise ValueError(f"{path} is truncated: its tensors need {8 + n + end} bytes, the "
                         f"file has {size}")


def check_no_remote_code(folder: Path) -> None:
    """Refuse a folder whose configs ask for its own code (``auto_map``).

    Raises:
        ValueError: Naming the file and the classes it maps.
    """
    for name in TRANSFORMER_CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        data = read_json_file(path)
        if isinstance(data, dict) and data.get("auto_map"):
            raise ValueError(
                f"{path} asks for model code shipped in the folder (auto_map: "
                f"{data['auto_map']!r:.120}); siamtext runs no such code unless you pass "
                "trust_remote_code=True, and loading the stock class instead could give "
                "other embeddings. Read the code first, then pass trust_remote_code=True."
            )


def check_transformer_folder(folder: Path, *, trust_remote_code: bool = False) -> None:
    """Run every check of this module on the folder holding a transformer's files.

    Args:
        folder: The folder with ``config.json``, the tokenizer and the weights.
        trust_remote_code: Allow ``auto_map`` (the folder's code then runs in transformers).

    Raises:
        ValueError: Naming the first file that fails a check.
    """
    if not trust_remote_code:
        check_no_remote_code(folder)
    for source, paths in _named_paths(folder):
        for what, value in paths:
            path_inside(folder, value, source, what)
    index = folder / WEIGHT_INDEX
    shards: set[Path] = set()
    if index.is_file():
        data = read_json_file(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no weight_map object")
        shards = {path_inside(folder, f, index, "shard path") for f in weight_map.values()}
    single = folder / "model.safetensors"
    for path in sorted(shards | ({single} if single.is_file() else set())):
        if not path.is_file():
            raise ValueError(f"{path} is missing: {index.name} lists it")
        check_safetensors(path)


def _named_paths(folder: Path) -> list[tuple[Path, list[tuple[str, object]]]]:
    """The file paths that the transformer's JSON files name, per file.

    ``transformers`` releases before the fixes of mid-2026 opened some of them verbatim (the
    ``*_file`` entries of ``tokenizer_config.json``, ``transformers_weights`` in
    ``config.json``). ``special_tokens_map_file`` is left out: older releases wrote the
    absolute cache path of the saving machine there, and the file is only ever read by its
    fixed name.
    """
    out = []
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file() and isinstance(data := read_json_file(tok_config), dict):
        paths: list[tuple[str, object]] = [
            (f"{key!r}", value) for key, value in data.items()
            if key.endswith("_file") and key != "special_tokens_map_file" and value is not None
        ]
        fast = data.get("fast_tokenizer_files") or []
        paths += [("'fast_tokenizer_files' entry", v) for v in
                  (fast if isinstance(fast, list) else [fast])]
        out.append((tok_config, paths))
    config = folder / "config.json"
    if config.is_file() and isinstance(data := read_json_file(config), dict):
        weights = data.get("transformers_weights")
        out.append((config, [] if weights is None else [("'transformers_weights'", weights)]))
    return out

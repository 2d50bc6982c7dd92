"""What an app serves: the model, the index and the intents, loaded in the background.

:class:`Service` holds them and the batchers, says whether it is ready, and closes it all on
shutdown (the batchers finish what is queued, then the index is closed, which writes its
pending snapshot). Writes (to the index or the intents) go one at a time under
:attr:`Service.write_lock`.

Threads: the model runs on each batcher's inference lanes (a torch model on one, with all of
torch's intra-op threads; an ONNX Runtime or OpenVINO model on one per core); everything
else that blocks (loading, index searches and writes, intent scoring) runs on
:meth:`Service.offload`'s workers, which use one torch thread each. With libgomp (torch's
OpenMP on Linux) a second thread running torch on several threads keeps a second OpenMP
team alive; once the teams' threads outnumber the cores, libgomp stops spinning between
parallel regions and every region pays a wake-up, which doubled the time of one short text
on 2 cores.
An exported engine takes its thread count when it is built, on the loading worker: each
batcher gives it the app's count before starting (:meth:`Service.batcher_for`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from siamtext.serve.batcher import Batcher
from siamtext.serve.errors import ApiError
from siamtext.serve.settings import ServeSettings

if TYPE_CHECKING:
    from siamtext.classify import IntentClassifier
    from siamtext.index import Index
    from siamtext.model import SiamText
    from siamtext.serve.metrics import Metrics

logger = logging.getLogger(__name__)

#: The ASGI scope key marking a request counted in :attr:`Service.arriving`.
ARRIVING = "siamtext.arriving"

#: Worker threads for blocking work besides inference (searches, writes, loading).
OFFLOAD_WORKERS = 4

ModelSource = Union["SiamText", Callable[[], "SiamText"]]
IndexSource = Union["Index", str, Path, Callable[["SiamText"], "Index"], None]
IntentsSource = Union["IntentClassifier", str, Path, None]


class Service:
    """The model, index and intents of one app, and the batchers in front of the encoders.

    Args:
        model: A :class:`~siamtext.SiamText`, or a function that loads one (called on a
            background thread at startup, so that ``/health`` answers while it loads).
        index: An open :class:`~siamtext.index.Index`, or a folder (opened with ``model``,
            created when missing), or a function of the loaded model that opens one (as
            ``lambda model: Index.open(uri, model, readonly=True)``), or ``None`` for no
            duplicate routes.
        intents: An :class:`~siamtext.classify.IntentClassifier`; a folder written by its
            ``save`` (loaded, written again after each change); or a collection of examples
            (a k-NN classifier on ``model``, each change a durable increment; created on the
            first write when missing); or ``None`` for no intent routes.
        settings: The batching settings.
        metrics: Where batches are counted.
        batcher: The class of the batchers (a :class:`Batcher` or one with its constructor
            and methods; :mod:`siamtext.integrations.ray_serve` gives one on ``@serve.batch``).
    """

    def __init__(self, model: ModelSource, index: IndexSource, intents: IntentsSource,
                 settings: ServeSettings, metrics: Metrics,
                 batcher: type[Batcher] = Batcher) -> None:
        import torch

        self._batcher_class = batcher
        self._sources = (model, index, intents)
        #: torch threads of the inference threads: what this (the app's) thread has now,
        #: before the workers, on one thread each, are started.
        self.torch_threads = torch.get_num_threads()
        self.settings = settings
        self.metrics = metrics
        self.model: SiamText | None = None
        self.index: Index | None = None
        self.intents: IntentClassifier | None = None
        #: The saved classifier folder that changes are written back to (``None`` for a
        #: classifier given as an object, or kept in a collection: durable on its own).
        self.intents_path: Path | None = None
        self._owns_intents = False
        self.has_index = index is not None
        self.has_intents = intents is not None
        self.ready = False
        self.load_error: str | None = None
        self.closed = False
        self.write_lock = asyncio.Lock()
        #: Requests received that may embed and have not reached a batcher yet.
        self.arriving = 0
        self._batchers: dict[int, Batcher] = {}
        self._lock = threading.Lock()
        #: Called (on the loading thread) when loading fails; ``siamtext serve`` stops then.
        self.on_load_error: Callable[[], None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=OFFLOAD_WORKERS,
                                            thread_name_prefix="siamtext-worker",
                                            initializer=_one_torch_thread)

    async def offload(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run blocking ``fn(*args, **kwargs)`` on a worker thread (one torch thread; see the
        module docstring) and await its result."""
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # ------------------------------------------------------------------ life
    def load(self) -> None:
        """Load the model, open the index and the intents, start the batchers. Runs on a
        worker thread; a failure is kept in :attr:`load_error` and raised."""
        try:
            self._load()
        except BaseException as err:
            self.load_error = f"{type(err).__name__}: {err}"
            logger.error("loading failed: %s", self.load_error)
            if self.on_load_error is not None:
                self.on_load_error()
            raise
        self.ready = True

    def _load(self) -> None:
        from siamtext.model import SiamText

        model, index, intents = self._sources
        self.model = model if isinstance(model, SiamText) else model()
        if not isinstance(self.model, SiamText):
            raise TypeError(f"model must be a SiamText or return one, got "
                            f"{type(self.model).__name__}")
        self.batcher_for(self.model)
        if index is not None:
            self.index = self._open_index(index)
        if intents is not None:
            self.intents = self._open_intents(intents)
            if self.intents.model is not None:
                self.batcher_for(self.intents.model)

    def _open_index(self, index: IndexSource) -> Index:
        from siamtext.index import Index

        if isinstance(index, Index):
            return index
        if callable(index):
            opened = index(self.model)
            if not isinstance(opened, Index):
                raise TypeError(f"index must return an Index, got {type(opened).__name__}")
            return opened
        return Index.create(Path(index), self.model, exist_ok=True)

    def _open_intents(self, intents: IntentsSource) -> IntentClassifier:
        from siamtext.classify import IntentClassifier

        if isinstance(intents, IntentClassifier):
            return intents
        from siamtext.classify.intent_folder import CONFIG_NAME

        path = Path(intents)
        if (path / CONFIG_NAME).is_file():  # a folder written by IntentClassifier.save
            self.intents_path = path  # rewritten after each change
            clf = IntentClassifier.load(path)
            if clf.model is not None and _same_encoder(clf.model, self.model):
                clf.set_params(model=self.model)  # one copy of the weights, one batcher
            return clf
        # else a collection of examples (siamtext.index), created on the first write:
        # each change is a durable increment of it
        self._owns_intents = True
        if path.exists():
            return IntentClassifier.open(path, self.model, mode="knn")
        return IntentClassifier(self.model, mode="knn", index=path)

    def close(self) -> None:
        """Finish the queued requests, stop the batchers, close the index."""
        if self.closed:
            return
        self.closed = True
        for batcher in list(self._batchers.values()):
            batcher.stop()
        if self.index is not None:
            self.index.close()
        if self._owns_intents and self.intents is not None:
            self.intents.close()  # releases its collection
        self._executor.shutdown(wait=False)

    # ------------------------------------------------------------------ use
    def batcher_for(self, encoder: SiamText) -> Batcher:
        """The batcher in front of ``encoder`` (one per encoder, started on first use).

        An exported engine (ONNX Runtime, OpenVINO) is set to the service's torch threads
        first: loaded on a one-thread worker, it would otherwise run on one core.
        """
        with self._lock:
            batcher = self._batchers.get(id(encoder))
            if batcher is None:
                engine = getattr(encoder, "_engine", None)
                if engine is not None and hasattr(engine, "set_threads"):
                    engine.set_threads(self.torch_threads)
                s = self.settings
                batcher = self._batcher_class(
                    encoder, max_batch_tokens=s.max_batch_tokens,
                    max_batch_requests=s.max_batch_requests, max_wait_ms=s.max_wait_ms,
                    max_queue=s.max_queue, on_batch=self.metrics.on_batch,
                    on_drop=self.metrics.on_drop, arriving=lambda: self.arriving,
                    threads=self.torch_threads)
                batcher.start()
                self._batchers[id(encoder)] = batcher
            return batcher

    def arrived(self, scope: dict) -> None:
        """A request stops counting as on its way to a batcher (once, whatever calls it)."""
        if scope.pop(ARRIVING, False):
            self.arriving -= 1

    def queue_depth(self) -> int:
        return sum(b.depth for b in self._batchers.values())

    def index_items(self) -> int:
        try:
            return len(self.index) if self.index is not None and not self.closed else 0
        except Exception:  # noqa: BLE001 - a scrape never fails on this
            return 0

    @property
    def index_readonly(self) -> bool:
        """Whether the index was opened read-only (it then catches up before searches)."""
        return self.index is not None and not self.index.store.writable

    def intent_classes(self) -> int:
        clf = self.intents
        return len(clf.classes_) if clf is not None and hasattr(clf, "classes_") else 0

    def require_ready(self) -> None:
        """Raise a 503 until everything is loaded."""
        if not self.ready:
            message = (f"the server failed to load: {self.load_error}" if self.load_error
                       else "the model is still loading")
            raise ApiError(503, message, None,
                           {"Retry-After": str(self.settings.retry_after_s)})

    def require_index(self) -> Index:
        self.require_ready()
        if self.index is None:
            raise ApiError(404, "this server has no index: start it with --index PATH")
        return self.index

    def require_intents(self) -> IntentClassifier:
        self.require_ready()
        if self.intents is None:
            raise ApiError(404, "this server has no intents: start it with --intents PATH")
        return self.intents

    def info(self) -> dict[str, Any]:
        import siamtext

        out: dict[str, Any] = {"version": siamtext.__version__, "ready": self.ready,
                               "pid": os.getpid(), "batching": self.metrics.batching(),
                               "settings": self.settings.public()}
        m = self.model
        if m is not None:
            out["model"] = {"name": self.model_name, "dim": m.embedding_dim,
                            "backend": m.backend, "file_name": m.file_name,
                            "max_seq_length": m.max_seq_length, "device": str(m.device)}
        if self.index is not None:
            out["index"] = {"items": self.index_items(), "dim": self.index.dim,
                            "readonly": self.index_readonly}
        clf = self.intents
        if clf is not None:
            fitted = hasattr(clf, "classes_")
            out["intents"] = {"classes": self.intent_classes(),
                              "examples": int(clf.examples_.shape[0]) if fitted else 0,
                              "mode": clf.mode, "threshold": clf.decision_threshold,
                              "unknown_label": clf.unknown_label}
        return out

    @property
    def model_name(self) -> str:
        if self.settings.model_name:
            return self.settings.model_name
        return getattr(self.model, "model_name_or_path", None) or "siamtext"


def _same_encoder(a: SiamText, b: SiamText) -> bool:
    from siamtext.index import fingerprint as fp

    return not fp.differences(fp.fingerprint(a), fp.fingerprint(b))


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)

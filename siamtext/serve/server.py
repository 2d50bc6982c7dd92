"""Run an app under uvicorn, and stop when its model fails to load."""

from __future__ import annotations

import logging

from fastapi import FastAPI

logger = logging.getLogger(__name__)


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8080,
          log_level: str = "info") -> int:
    """Serve ``app`` until SIGINT or SIGTERM; returns the exit status.

    On SIGTERM uvicorn stops accepting connections and lets the requests in flight finish;
    then the app's lifespan ends, which finishes the queued batches and closes the index.
    A model, index or intents folder that fails to load stops the server with status 1.
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)
    service = app.state.service
    failed = {"yes": False}

    def stop_on_failure() -> None:
        # called from the app's loading thread: uvicorn polls should_exit
        failed["yes"] = True
        server.should_exit = True

    service.on_load_error = stop_on_failure
    server.run()
    if failed["yes"]:
        logger.error("siamtext serve: loading failed: %s", service.load_error)
        return 1
    return 0

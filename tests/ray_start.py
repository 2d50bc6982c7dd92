"""Start a local Ray instance for a test, trying again when its start times out."""

from __future__ import annotations


def start_local_ray(**options: object) -> None:
    """``ray.init(num_cpus=2, ...)`` with up to three tries.

    Ray waits a fixed time for its GCS server and raylet to come up; on 2 cores busy with the
    other test worker that can run out ("timed out during startup", "Timed out waiting for
    file .../gcs_server_port_..."), so a start that timed out is tried again. Any other
    error is raised at once.
    """
    import ray

    for attempt in (1, 2, 3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, **options)
            return
        except Exception as error:
            ray.shutdown()
            if attempt == 3 or "timed out" not in str(error).lower():
                raise

"""ExpertActor: one Ray actor per expert model, holding that model's engine.

The actor is thin on purpose: it is the library's in-process handle (:class:`LocalExpert`) living
in a Ray worker, every method delegating to the engine, so everything worth testing lives in the
library. Its process survives unloads, so the backend's import cost is paid once; except where the engine
serves one instance per process (vLLM on CUDA): then the handle ends the actor at unload and the next load
starts a fresh one (``skillmoe_ray_actors.placement.RayExpert``).
"""

from __future__ import annotations

import gc
import logging
import os
import sys

from skillmoe_ray.config import EngineConfig, ModelSpec
from skillmoe_ray.engines import create_engine
from skillmoe_ray.scheduling.handles import LocalExpert


class ExpertActor(LocalExpert):
    """An expert model's engine inside a Ray worker process (the in-process handle, run remotely)."""

    def __init__(self, spec: ModelSpec, engine: EngineConfig, log_path: str | None = None):
        if log_path:
            redirect_output(log_path)
        logging.basicConfig(level=logging.WARNING)
        super().__init__(create_engine(engine, spec))
        self.engine.prepare()
        # Everything imported so far lives as long as the process; frozen, the full collection at each
        # unload scans only the model's own objects (0.3-1.1 s a swap on 2 cores without it).
        gc.freeze()

    def node_id(self) -> str:
        """The Ray node this actor runs on (the run's summary lists where each expert ran)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        """The worker process's id (tests and the GPU check see a reload happen in a fresh process)."""
        return os.getpid()

    def memory(self) -> dict:
        """This process's memory (the GPU check's rows): pid, RSS and pinned host bytes (None off CUDA)."""
        return process_memory()

    def prefetch(self) -> int:
        """Read ahead in the actor's own call (the caller does not wait for it); returns the bytes
        asked for."""
        return self.engine.prefetch()


def process_memory() -> dict:
    """pid, resident set (bytes) and PyTorch's pinned host memory: held (cached blocks too) and in use."""
    with open("/proc/self/status", encoding="utf-8") as status:
        rss = next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:")), None)
    pinned = {"pinned_held_bytes": None, "pinned_in_use_bytes": None}
    torch = sys.modules.get("torch")  # only where the engine imported it: never imported here for this
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        stats = torch.cuda.host_memory_stats()
        pinned = {
            "pinned_held_bytes": stats.get("allocated_bytes.current"),
            "pinned_in_use_bytes": stats.get("active_bytes.current"),
        }
    return {"pid": os.getpid(), "rss_bytes": rss, **pinned}


def redirect_output(path: str) -> None:
    """Send this process's stdout and stderr (engine warnings, native-library messages) to a file.

    Engines print a great deal while loading; in the run's console that would bury the driver's
    progress lines, so each expert's output goes to its own log file in the run directory.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)

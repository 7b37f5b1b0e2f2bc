"""Ray, for jobs on several workers: the connection, and the worker actor that upscales parts.

Ray is an optional extra (``pip install -r requirements-cluster.txt``); nothing here imports it until
a cluster is asked for, and asking without it raises ``OptionsError`` naming the extra and the command.

- ``connect(address, workers)``: ``address`` None starts a local Ray on this machine with
  ``workers`` workers (one per GPU; on a CPU, an equal share of the cores each), quietly (Ray's own
  logs stay out of the terminal unless the log level is INFO or DEBUG), on the loopback address;
  ``auto``, ``ray://host:10001`` or a ``RAY_ADDRESS`` joins a running cluster, whose workers are its
  GPUs (or ``workers`` of them).
- ``PartWorker``: one Ray actor per worker. It loads the model once (``get_processor``) and
  upscales parts of jobs (``vsr.job.runner.run_piece(part=...)``) into a part folder, keeping that
  part's checkpoint there, so a worker process that dies (Ray restarts the actor and retries the
  call: ``max_restarts``, ``max_task_retries``) goes on from the part's last checkpoint. ``stop()``
  reaches a running part (a threaded actor) and keeps what it has done; ``progress()`` says how far it is.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsr import environment
from vsr.options import OptionsError, UpscaleOptions

logger = logging.getLogger(__name__)

EXTRA = ("pip install -r requirements-cluster.txt (the pin ray==2.60.0), or pip install "
         "'stream-diffvsr-upscaler[cluster]'")
MAX_RESTARTS = 3
"""Times Ray restarts a worker whose process died; the part it was upscaling goes on from its checkpoint."""
CPU_CORES_PER_WORKER = 2
"""On a cluster without GPUs: a worker for every this many CPU cores (unless --workers says how many)."""
CALL_SECONDS = 30.0
"""The longest wait for a small call to a worker (its pid, its progress, a stop)."""


def require_ray(what: str) -> Any:
    """The ``ray`` module, or ``OptionsError`` naming ``what`` needed it, the extra and its install command."""
    try:
        import ray
    except ImportError as exc:
        raise OptionsError(f"{what} needs Ray, the optional cluster extra, which is not installed. Install it with "
                           f"{EXTRA}; or run on one device (without {what}).") from exc
    return ray


@dataclass
class Cluster:
    """A connected Ray: ``workers`` workers, each with ``gpus`` GPUs or ``cpus`` CPU cores. ``owned``:
    this process started it (local) and shuts it down in ``close``."""

    address: str
    workers: int
    gpus: float
    cpus: float
    owned: bool
    actors: list[Any] = field(default_factory=list)
    model: tuple = ()  # the workers' engine (``vsr.model.engines.processor_key``)

    def close(self) -> None:
        """Stop this cluster's workers, and the local Ray when this process started it."""
        ray = require_ray("a cluster")
        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                logger.debug("worker already gone")
        self.actors.clear()
        if self.owned and ray.is_initialized():
            ray.shutdown()


def connect(address: str | None, workers: int | None, *, gpus_here: int | None = None,
            cpus_here: int | None = None, verbose: bool = False) -> Cluster:
    """Connect to (``address``) or start (None) a Ray cluster and decide its workers (see module doc)."""
    ray = require_ray("--cluster" if address else "--workers")
    if workers is not None and workers < 1:
        raise OptionsError(f"--workers must be 1 or more; got {workers}.")
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if address is None:
        gpus = _local_gpus() if gpus_here is None else gpus_here
        cpus = cpus_here or os.cpu_count() or 1
        count = workers or max(1, gpus)
        package_root = str(Path(__file__).resolve().parents[2])  # local workers import this very checkout
        env = {"PYTHONPATH": environment.pythonpath_with(Path(package_root))}
        ray.init(address="local", num_cpus=max(cpus, count), num_gpus=gpus, include_dashboard=False,
                 _node_ip_address="127.0.0.1", runtime_env={"env_vars": env}, **quiet)
        per_gpu = 1.0 if gpus >= count else 0.0
        share = 0.0 if per_gpu else float(max(1, max(cpus, count) // count))
        return Cluster("local", count, per_gpu, share, owned=True)
    if not ray.is_initialized():  # else this process is already connected (or runs the cluster's driver)
        ray.init(address=address, **quiet)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    count = workers or max(1, gpus or cpus // CPU_CORES_PER_WORKER)
    if gpus:
        return Cluster(address, count, 1.0, 0.0, owned=False)
    return Cluster(address, count, 0.0, float(max(1, cpus // count)), owned=False)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def start_workers(cluster: Cluster, options: UpscaleOptions) -> list[Any]:
    """One ``PartWorker`` actor per worker, each loading the model once; returns them (kept in ``cluster``,
    and reused by the next job of the same engine: a batch loads its model once per worker)."""
    from vsr.model.engines import processor_key

    ray = require_ray("a cluster")
    if cluster.actors and cluster.model == processor_key(options):
        return cluster.actors
    for actor in cluster.actors:
        ray.kill(actor, no_restart=True)
    cluster.actors.clear()
    cluster.model = processor_key(options)
    remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS, max_concurrency=4)(PartWorker)
    threads = int(cluster.cpus) if cluster.cpus else None
    for _ in range(cluster.workers):
        actor = remote.options(num_gpus=cluster.gpus, num_cpus=cluster.cpus or 0.001).remote(options, threads)
        cluster.actors.append(actor)
    return cluster.actors


@dataclass(frozen=True)
class PartOutcome:
    """What a worker hands back for a part: ``records`` (``SegmentRecord``s, in order) and, through the
    object store, ``files`` (name -> bytes; None when the pieces stay in a shared folder); or
    ``stopped`` (cancelled: the part's checkpoint stays in its folder)."""

    number: int
    records: tuple[Any, ...] = ()
    files: dict[str, bytes] | None = None
    stopped: bool = False
    model_seconds: float = 0.0
    frames: int = 0
    offset: Any = None  # the pieces' time line (``JobCheckpoint.offset``)
    seed: int | None = None
    scene_cuts: tuple[int, ...] = ()


class PartWorker:
    """A Ray actor (``start_workers``): one loaded engine, one part at a time (see module doc)."""

    def __init__(self, options: UpscaleOptions, threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from vsr.model import engines

        self._options = options
        self._processor = engines.get_processor(options)
        self._cancel = threading.Event()
        self._status: dict[str, Any] = {}
        self._lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        """Stop the running part at the next frame, keeping its checkpoint."""
        self._cancel.set()

    def progress(self, pictures: bool = False) -> dict[str, Any]:
        """The running part: ``part``, ``done`` (its kept frames so far), ``warming``, ``fps``; with
        ``pictures`` the newest input and output frames."""
        with self._lock:
            status = dict(self._status)
        if not pictures:
            status.pop("input", None)
            status.pop("output", None)
        return status

    def run(self, job: Any, part: Any, folder: str, ship: bool, output: str) -> PartOutcome:
        """Upscale ``part`` of ``job`` into ``folder`` (going on from a checkpoint there) and hand it
        back (``ship``: the pieces' bytes through the object store, the folder removed)."""
        from vsr.job import checkpoint
        from vsr.job.errors import JobCancelled
        from vsr.job.runner import CallLimit, run_piece

        self._cancel.clear()
        where = Path(folder)
        where.mkdir(parents=True, exist_ok=True)
        resume = checkpoint.load(where) if checkpoint.exists(where) else None
        start = resume.next_index if resume is not None else part.warm
        with self._lock:
            self._status = {"part": part.number, "done": max(0, start - part.first), "frames": part.frames,
                            "warming": start < part.first, "fps": None, "since": time.monotonic()}
        if resume is None or not (resume.complete or (not part.is_whole and resume.next_index >= part.end)):
            limit = None if part.is_whole else CallLimit(frames=part.end - start)  # a whole video: to its end
            try:
                outcome = run_piece(job, Path(output), processor=self._processor, checkpoint_dir=where, resume=resume,
                                    limit=limit, finish=False, part=part,
                                    cancel=self._cancel, on_progress=lambda event: self._seen(event, part))
            except JobCancelled:
                if part.is_whole:  # the web app's job: a cancel keeps nothing
                    shutil.rmtree(where, ignore_errors=True)
                return PartOutcome(part.number, stopped=True)
            resume = outcome.checkpoint
        files = {r.name: (where / r.name).read_bytes() for r in resume.segments} if ship else None
        result = PartOutcome(part.number, tuple(resume.segments), files, model_seconds=resume.model_seconds,
                             frames=sum(r.frames for r in resume.segments), offset=resume.offset, seed=resume.seed,
                             scene_cuts=tuple(resume.scene_cuts))
        if ship:
            shutil.rmtree(where, ignore_errors=True)
        return result

    def _seen(self, event: Any, part: Any) -> None:
        if event.stage != "upscaling":
            return
        with self._lock:
            self._status.update(done=max(0, event.done - part.first), warming=event.done < part.first,
                                fps=event.fps, input=event.input_frame, output=event.output_frame)

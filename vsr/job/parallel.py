"""One video on several workers: plan its parts, hand them to Ray workers, join and verify the result.

``plan_parallel(job, workers, ...)`` decodes the job's range once (every frame's time, the scene
cuts: ``vsr.job.parts.survey``) and cuts it into parts (``plan_parts``); ``run_parallel`` hands the
parts to the cluster's ``PartWorker``s (``vsr.job.cluster``), whichever is free taking the next,
stores each finished part in the job's folder (``checkpoint_dir``: ``parts.pkl`` lists the finished
parts; their pieces come through Ray's object store into ``part-NNNNN/``, or stay in the shared
folder), and at the end joins every piece by stream copy with the audio and subtitles
(``media.join_segments``) and verifies the file, as a single run does. A part whose worker died is
taken again (by the restarted worker, from the part's checkpoint; or by another worker). A cancel
stops every worker at its next frame and keeps what is done: ``resume=True`` goes on from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
import shutil
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import media
from vsr.job import checkpoint
from vsr.job.checkpoint import JobCheckpoint, SegmentRecord
from vsr.job.cluster import CALL_SECONDS, Cluster, PartOutcome, require_ray, start_workers
from vsr.job.errors import CheckpointMismatch, JobCancelled, JobFailed, VerificationFailed
from vsr.job.parts import DEFAULT_WARMUP, Part, default_part_frames, plan_parts, plan_text, survey
from vsr.job.planning import JobPlan, encode_settings
from vsr.job.progress import ProgressCallback, ProgressEvent
from vsr.model.protocol import new_seed
from vsr.options import TEMPORAL_ENGINES

logger = logging.getLogger(__name__)

MANIFEST = "parts.pkl"
POLL_SECONDS = 0.5
STOP_SECONDS = 120.0
"""After a cancel, the longest wait for the workers to stop at a frame and keep their checkpoints."""


@dataclass(frozen=True)
class ParallelPlan:
    """A job cut into ``parts`` for ``workers`` workers; ``job`` has its seed fixed (one for every part)."""

    job: JobPlan
    parts: tuple[Part, ...]
    workers: int
    warmup: int
    shared_dir: Path | None = None

    def to_text(self) -> str:
        return plan_text(self.parts, self.warmup, self.workers, str(self.shared_dir) if self.shared_dir else None)

    @property
    def key(self) -> str:
        """The job's name among parts folders: its input, options, seed and parts."""
        base = checkpoint.new(self.job, {}, int(self.job.options.seed))
        text = repr((base.input, base.options, base.seed, [(p.warm, p.first, p.end) for p in self.parts]))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Manifest:
    """The job folder's record of finished parts (``parts.pkl``): their segment records by part."""

    base: JobCheckpoint
    parts: tuple[Part, ...]
    done: dict[int, tuple[SegmentRecord, ...]] = field(default_factory=dict)
    model_seconds: float = 0.0


def plan_parallel(job: JobPlan, workers: int, *, segment_seconds: float | None = None, warmup: int = DEFAULT_WARMUP,
                  shared_dir: Path | None = None, cancel: threading.Event | None = None,
                  seed: int | None = None) -> ParallelPlan:
    """Cut ``job`` into parts for ``workers`` workers (``segment_seconds``: their length; default from the
    video's length and the workers). Decodes the range once (see module doc)."""
    chosen = job.options.seed if job.options.seed is not None else (seed if seed is not None else new_seed())
    job = dataclasses.replace(job, options=dataclasses.replace(job.options, seed=chosen))
    found = survey(job, cancel=cancel)
    frames = (max(1, round(segment_seconds * float(job.rate))) if segment_seconds
              else default_part_frames(len(found.pts), workers))
    # An engine without temporal state (bicubic) needs no warm-up; the workers run the options' engine.
    warmup = warmup if job.options.engine in TEMPORAL_ENGINES else 0
    return ParallelPlan(job, plan_parts(job, found, frames, warmup), workers, warmup, shared_dir)


def run_parallel(plan: ParallelPlan, cluster: Cluster, output: str | Path, checkpoint_dir: str | Path, *,
                 on_progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                 resume: bool = False, pictures: bool = False) -> Any:
    """Upscale ``plan`` on ``cluster``'s workers into ``output`` (verified); see the module doc.
    Returns a ``vsr.job.runner.JobResult``. ``pictures``: progress events carry the newest frames."""
    from vsr.job.runner import JobResult, _check_output

    ray = require_ray("a cluster")
    job, output, folder = plan.job, Path(output), Path(checkpoint_dir)
    emit = on_progress or (lambda event: None)
    started = time.perf_counter()
    _check_output(job, output)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(plan, folder, resume)
    emit(ProgressEvent("loading", _kept(manifest), job.frames, message=f"starting {cluster.workers} worker(s)"))
    actors = start_workers(cluster, job.options)
    manifest = _dispatch(plan, manifest, actors, folder, output, emit, cancel, pictures, ray)
    pieces = [media.Segment(_part_folder(plan, folder, number) / r.name, r.time_base, r.packets)
              for number in sorted(manifest.done) for r in manifest.done[number]]
    write = join(job, output, pieces, plan.parts[0].offset, emit)
    remove(folder, plan)
    seconds = time.perf_counter() - started
    done = write.frames
    emit(ProgressEvent("done", done, done, message=f"done in {seconds:.1f} s"))
    cuts = tuple(sorted({c for p in plan.parts for c in p.cuts or () if c >= p.first}))
    return JobResult(output, None, write.verification, write, done, seconds, manifest.model_seconds,
                     int(job.options.seed), cuts)


def join(job: JobPlan, output: Path, pieces: list[media.Segment], offset: Fraction, emit: ProgressCallback) -> Any:
    """Join the parts' pieces by stream copy with the audio and subtitles, verified before it is renamed."""
    from vsr.job.runner import _expected, _failed_checks

    done = sum(p.frames for p in pieces)
    emit(ProgressEvent("finishing", done, done, message="joining the parts, adding the audio and subtitles"))
    joining = time.perf_counter()
    try:
        write = media.join_segments(output, job.info, pieces, encode_settings(job.options), offset, job.trim_start,
                                    job.trim_end, expected=_expected(job, done),
                                    on_verify=lambda: emit(ProgressEvent("verifying", done, done)))
    except media.VerificationFailed as exc:
        raise VerificationFailed(f"{output}: the joined video failed verification ({_failed_checks(exc.report)}), "
                                 "so it was not saved.", exc.report) from exc
    logger.info("joined %d pieces in %.2f s", len(pieces), time.perf_counter() - joining)
    return write


def _manifest(plan: ParallelPlan, folder: Path, resume: bool) -> Manifest:
    """The job folder's manifest: a new one, or (``resume``) the one there, checked against ``plan``."""
    base = checkpoint.new(plan.job, {}, int(plan.job.options.seed))
    path = folder / MANIFEST
    if resume and path.is_file():
        with path.open("rb") as fh:
            saved = pickle.load(fh)
        reason = checkpoint.refusal(saved.base, plan.job)
        if reason is None and saved.parts != plan.parts:
            reason = "its parts differ (other --workers or --segment-seconds)"
        if reason is not None:
            raise CheckpointMismatch(f"{folder}: the kept parts cannot continue this job: {reason}. Run it as it was "
                                     "started, or start over (--overwrite).", folder)
        return saved
    manifest = Manifest(base, plan.parts)
    _save(folder, manifest)
    return manifest


def _save(folder: Path, manifest: Manifest) -> None:
    media.write_durably(folder / MANIFEST, lambda fh: pickle.dump(manifest, fh, protocol=5))


def _kept(manifest: Manifest) -> int:
    return sum(r.frames for records in manifest.done.values() for r in records)


def _part_folder(plan: ParallelPlan, folder: Path, number: int) -> Path:
    """Where part ``number``'s pieces are: the shared folder's, or the job folder's copy of the shipped ones."""
    if plan.shared_dir is not None:
        return plan.shared_dir / plan.key / f"part-{number:05d}"
    return folder / f"part-{number:05d}"


def _worker_folder(plan: ParallelPlan, number: int) -> str:
    """The folder a worker upscales part ``number`` into (and keeps its checkpoint in)."""
    if plan.shared_dir is not None:
        return str(plan.shared_dir / plan.key / f"part-{number:05d}")
    return str(plan.job.options.tmp_dir / "parts" / plan.key / f"part-{number:05d}")


def _dispatch(plan: ParallelPlan, manifest: Manifest, actors: list[Any], folder: Path, output: Path,
              emit: ProgressCallback, cancel: threading.Event | None, pictures: bool, ray: Any) -> Manifest:
    """Hand the parts not yet done to whichever worker is free; store each finished part."""
    waiting = [p for p in plan.parts if p.number not in manifest.done]
    running: dict[Any, tuple[Any, Part]] = {}
    idle = list(actors)
    speeds: dict[int, float] = {}
    started, kept_before = time.monotonic(), _kept(manifest)
    stopping = False
    alive = len(actors)
    while waiting or running:
        if cancel is not None and cancel.is_set() and not stopping:
            stopping = True
            waiting.clear()
            for actor, _ in running.values():
                actor.stop.remote()
        while waiting and idle:
            actor, part = idle.pop(0), waiting.pop(0)
            ref = actor.run.remote(plan.job, part, _worker_folder(plan, part.number), plan.shared_dir is None,
                                   str(output))
            running[ref] = (actor, part)
        ready, _ = ray.wait(list(running), num_returns=1, timeout=STOP_SECONDS if stopping else POLL_SECONDS)
        if stopping and not ready:
            break
        for ref in ready:
            actor, part = running.pop(ref)
            try:
                outcome: PartOutcome = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # restarts used up: another worker takes the part
                logger.warning("worker for part %d is gone (%s); another takes the part", part.number, exc)
                alive -= 1
                if not stopping:
                    waiting.insert(0, part)
                if alive == 0:
                    raise JobFailed(f"{plan.job.input}: every worker of the cluster is gone; the finished parts are "
                                    f"kept in {folder}: run again with --resume.") from exc
                continue
            except ray.exceptions.RayTaskError as exc:  # the part failed: stop the others, keep what is done
                for other, _ in running.values():
                    other.stop.remote()
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise cause from None
            idle.append(actor)
            if not outcome.stopped:
                manifest = _store(plan, manifest, folder, outcome)
        _report(plan, manifest, running, emit, speeds, started, kept_before, pictures, ray)
    if stopping:
        done = _kept(manifest)
        raise JobCancelled(f"The job was cancelled; {done} frame(s) in finished parts are kept in {folder}, and the "
                           "running parts keep their checkpoints.", checkpoint=folder, done=done,
                           total=plan.job.frames)
    return manifest


def _store(plan: ParallelPlan, manifest: Manifest, folder: Path, outcome: PartOutcome) -> Manifest:
    """Keep a finished part: its pieces' bytes in the job folder (object store) and its records in the manifest."""
    if outcome.files is not None:
        where = folder / f"part-{outcome.number:05d}"
        where.mkdir(exist_ok=True)
        for name, data in outcome.files.items():
            media.write_durably(where / name, lambda fh, data=data: fh.write(data))
    done = {**manifest.done, outcome.number: outcome.records}
    manifest = dataclasses.replace(manifest, done=done, model_seconds=manifest.model_seconds + outcome.model_seconds)
    _save(folder, manifest)
    return manifest


def _report(plan: ParallelPlan, manifest: Manifest, running: dict[Any, tuple[Any, Part]], emit: ProgressCallback,
            speeds: dict[int, float], started: float, kept_before: int, pictures: bool, ray: Any) -> None:
    """One progress event for the whole job: frames done of all, each worker's speed, the time left."""
    refs = [actor.progress.remote(pictures) for actor, _ in running.values()]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=min(CALL_SECONDS, POLL_SECONDS)) if refs else ([], [])
    statuses = []
    for ref in ready:
        try:
            statuses.append(ray.get(ref))
        except Exception:  # noqa: BLE001 - a worker being restarted answers later
            continue
    done = _kept(manifest) + sum(s.get("done", 0) for s in statuses if s.get("part") not in manifest.done)
    for s in statuses:
        if s.get("fps"):
            speeds[s["part"]] = s["fps"]
    elapsed = time.monotonic() - started
    fps = (done - kept_before) / elapsed if elapsed > 0 and done > kept_before else None
    eta = (plan.job.frames - done) / fps if fps else None
    each = " ".join(f"{s['fps']:.2f}" for s in sorted(statuses, key=lambda s: s.get("part", 0)) if s.get("fps"))
    newest = next((s for s in statuses if s.get("output") is not None), {})
    emit(ProgressEvent("upscaling", min(done, plan.job.frames), plan.job.frames, fps, eta, newest.get("input"),
                       newest.get("output"), workers=f"{len(running)} worker(s) busy"
                       + (f", frames/s each: {each}" if each else "")))


def remove(folder: Path, plan: ParallelPlan | None = None) -> None:
    """Delete a parallel job's folder (its manifest and part folders) and, with ``plan``, its shared parts."""
    if plan is not None and plan.shared_dir is not None:
        shutil.rmtree(plan.shared_dir / plan.key, ignore_errors=True)
    if plan is not None:
        shutil.rmtree(plan.job.options.tmp_dir / "parts" / plan.key, ignore_errors=True)
    for path in folder.glob("part-[0-9][0-9][0-9][0-9][0-9]"):
        shutil.rmtree(path, ignore_errors=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    checkpoint.remove(folder)


def saved_seed(folder: Path) -> int | None:
    """The seed of the parallel job kept in ``folder`` (a job started with a random seed resumes with it)."""
    if not is_parallel(folder):
        return None
    try:
        with (folder / MANIFEST).open("rb") as fh:
            return int(pickle.load(fh).base.seed)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
        return None


def is_parallel(folder: Path) -> bool:
    """Whether ``folder`` is a parallel job's (it holds a parts manifest)."""
    return (folder / MANIFEST).is_file()



class WorkerPool:
    """The web app's cluster (``STREAM_DIFFVSR_CLUSTER``): its workers, each lent to one job at a time,
    a whole video per job (exactly a single run's frames). Connected on first use; a worker keeps its
    model for the next job of the same engine (another engine: the free worker is replaced)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._cluster: Cluster | None = None
        self._lock = threading.Condition()
        self._free: list[tuple[tuple, Any]] = []  # (engine key, actor) not lent now

    @property
    def workers(self) -> int:
        return self.cluster.workers

    @property
    def cluster(self) -> Cluster:
        from vsr.job.cluster import connect

        with self._lock:
            if self._cluster is None:
                self._cluster = connect(None if self.address == "local" else self.address, None)
                logger.info("jobs run on the Ray cluster at %s: %d worker(s), %s each", self.address,
                            self._cluster.workers, f"{self._cluster.gpus:g} GPU" if self._cluster.gpus
                            else f"{self._cluster.cpus:g} CPU core(s)")
                self._free = [((), None)] * self._cluster.workers
            return self._cluster

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.actors = [actor for _, actor in self._free if actor is not None]
                self._cluster.close()
                self._cluster = None

    def _borrow(self, options: Any, cancel: threading.Event | None) -> tuple[tuple, Any]:
        from vsr.model.engines import processor_key

        cluster, key = self.cluster, processor_key(options)
        with self._lock:
            while not self._free:
                if cancel is not None and cancel.is_set():
                    raise JobCancelled("The job was cancelled before a worker was free; nothing was kept.")
                self._lock.wait(POLL_SECONDS)
            same = next((i for i, (k, _) in enumerate(self._free) if k == key), None)
            held, actor = self._free.pop(same if same is not None else 0)
        if held != key:
            if actor is not None:
                require_ray("a cluster").kill(actor, no_restart=True)
            fresh = Cluster(cluster.address, 1, cluster.gpus, cluster.cpus, owned=False)
            actor = start_workers(fresh, options)[0]
        return key, actor

    def _give_back(self, key: tuple, actor: Any) -> None:
        with self._lock:
            self._free.append((key, actor))
            self._lock.notify()

    def run(self, job: JobPlan, output: Path, folder: Path, *, on_progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None, preview_dir: Path | None = None) -> Any:
        """Upscale ``job`` on one worker, with pictures in the progress; join and verify here (and make a
        browser-playable copy in ``preview_dir`` when the file does not play in browsers)."""
        from vsr.job.runner import JobResult, _check_output

        ray = require_ray("STREAM_DIFFVSR_CLUSTER")
        emit = on_progress or (lambda event: None)
        started = time.perf_counter()
        _check_output(job, output)
        emit(ProgressEvent("loading", 0, job.frames, message="waiting for a worker of the cluster"))
        key, actor = self._borrow(job.options, cancel)
        try:
            outcome = self._follow(job, output, actor, emit, cancel, ray)
        except ray.exceptions.RayActorError:
            key = ()  # the worker is gone: a new one is started for the next job
            actor = None
            raise JobFailed(f"{job.input}: the cluster's worker was lost; run the job again.") from None
        finally:
            self._give_back(key, actor)
        if outcome.stopped:
            raise JobCancelled("The job was cancelled; its partial output and temporary files were removed.")
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (outcome.files or {}).items():
            media.write_durably(folder / name, lambda fh, data=data: fh.write(data))
        pieces = [media.Segment(folder / r.name, r.time_base, r.packets) for r in outcome.records]
        try:
            write = join(job, output, pieces, outcome.offset or Fraction(0), emit)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        preview = media.make_browser_preview(output, preview_dir) if preview_dir is not None else None
        seconds = time.perf_counter() - started
        emit(ProgressEvent("done", write.frames, write.frames, message=f"done in {seconds:.1f} s"))
        return JobResult(output, preview, write.verification, write, write.frames, seconds, outcome.model_seconds,
                         int(outcome.seed if outcome.seed is not None else job.options.seed or 0), outcome.scene_cuts)

    def _follow(self, job: JobPlan, output: Path, actor: Any, emit: ProgressCallback,
                cancel: threading.Event | None, ray: Any) -> PartOutcome:
        """Run the whole video on ``actor``, passing its progress (and pictures) on; a cancel reaches it."""
        import uuid

        where = str(job.options.tmp_dir / "parts" / f"web-{uuid.uuid4().hex}")
        ref = actor.run.remote(job, Part.whole(job.frames), where, True, str(output))
        stopped = False
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
            if ready:
                return ray.get(ref)
            if cancel is not None and cancel.is_set() and not stopped:
                actor.stop.remote()
                stopped = True
            progress = actor.progress.remote(True)
            got, _ = ray.wait([progress], timeout=POLL_SECONDS)
            if got:
                status = ray.get(got[0])
                if status.get("part") == 0 and "done" in status:
                    done = status["done"]
                    fps = status.get("fps")
                    eta = (job.frames - done) / fps if fps else None
                    emit(ProgressEvent("upscaling", done, max(done, job.frames), fps, eta, status.get("input"),
                                       status.get("output"), message="on the cluster"))

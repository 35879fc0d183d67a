"""The job runner: threads, child processes, timeouts, CSV, resumption.

:func:`run_jobs` runs any list of jobs, accuracy (:class:`EvalJob`) and speed
(:class:`SpeedJob`) alike. A job is an object with

* ``record_type``: its record dataclass (:class:`~skad.benchmark._records.
  BaseRecord`), whose fields are the CSV columns;
* ``key()``: the key of its record (a resumed run skips recorded keys);
* ``label``: text for the progress bar;
* ``record(status=..., error=...)``: a record of the job without results
  (used for timeouts and crashed processes);
* ``execute(cache)``: run it and return its record, never raising; ``cache``
  is the :class:`~skad.benchmark._protocol.SplitCache` of the process.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import os
import threading

from skad.benchmark._protocol import SplitCache
from skad.benchmark._records import ResultsCsv

__all__ = ["resolve_threads", "run_jobs", "set_thread_env", "thread_settings"]

logger = logging.getLogger("skad.benchmark")


# ----------------------------------------------------------------- threads
def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_threads(threads=None, n_jobs=1):
    """Torch threads per job: ``(n, reason)``.

    ``None`` / ``"auto"``: all cores when the machine is idle, fewer when its
    1-minute load average shows other work (one thread on a busy shared
    machine), because torch's OpenMP threads busy-wait for busy cores.
    """
    n_cpus = _n_cpus()
    if threads not in (None, "auto"):
        n = int(threads)
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {threads}.")
        return n, "set by the caller"
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    free = max(1, n_cpus - math.ceil(load - 0.25))
    per_job = max(1, free // max(1, n_jobs))
    if free >= n_cpus:
        return per_job, f"auto: {n_cpus} idle cores, {n_jobs} job(s) at a time"
    return per_job, f"auto: {n_cpus} cores shared, load average {load:.1f}"


def set_thread_env(threads: int) -> None:
    """Environment inherited by job processes (read by OpenMP at start-up)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


@contextlib.contextmanager
def thread_settings(threads: int):
    """Set the thread environment inside the block, then restore it."""
    import torch

    saved_env = dict(os.environ)
    saved_threads = torch.get_num_threads()
    try:
        set_thread_env(threads)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (in-process runs)
        pass


def warm_up_torch():
    """Pay torch's one-time costs (the first optimiser imports torch._dynamo,
    seconds on a busy machine) before any job is timed."""
    import torch

    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3)
    (p * 2).sum().backward()
    opt.step()


# ----------------------------------------------------------------- workers
def _worker_main(conn, threads):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _set_torch_threads(threads)
    # import what the jobs use now, so that no job's fit time pays for it
    import sklearn.ensemble  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.svm  # noqa: F401

    import skad  # noqa: F401
    import skad.metrics  # noqa: F401

    warm_up_torch()
    cache = SplitCache()
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if job is None:
            break
        conn.send(job.execute(cache))


class _Worker:
    """One child process that runs jobs in turn; killed on a timeout.

    With ``jobs_per_process``, the process is replaced after that many jobs
    (1: every job in a fresh process).
    """

    def __init__(self, threads, jobs_per_process=None, start_method="spawn"):
        self.threads = threads
        self.jobs_per_process = jobs_per_process
        self.ctx = mp.get_context(start_method)
        self.proc = None
        self.conn = None
        self.n_run = 0

    def _start(self):
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker_main, args=(child, self.threads), daemon=True
        )
        self.proc.start()
        child.close()
        self.conn = parent
        self.n_run = 0
        # wait for the imports, so that they do not count against a job's timeout
        try:
            if not parent.poll(600) or parent.recv() != "ready":
                raise RuntimeError("the job process did not start")
        except EOFError as exc:
            raise RuntimeError(
                f"the job process died at start-up (exit code {self.proc.exitcode})"
            ) from exc

    def run(self, job, timeout):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(job)
        self.n_run += 1
        if self.conn.poll(timeout):
            try:
                record = self.conn.recv()
            except (EOFError, OSError):
                code = self.proc.exitcode
                self.close(kill=True)
                return job.record(
                    status="failed", error=f"job process died (exit code {code})"
                )
            if self.jobs_per_process and self.n_run >= self.jobs_per_process:
                self.close()
            return record
        self.close(kill=True)
        return job.record(
            status="timeout", error=f"exceeded the timeout of {timeout:g} s"
        )

    def close(self, kill=False):
        if self.proc is None:
            return
        if not kill:
            try:
                self.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            self.proc.join(timeout=1)
        # the worker holds no state worth a slow interpreter shutdown
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.proc = self.conn = None


# --------------------------------------------------------------------- run
def run_jobs(
    jobs,
    *,
    csv_path=None,
    timeout=None,
    threads=1,
    isolate=True,
    progress=True,
    resume=True,
    retry_failed=False,
    n_jobs=1,
    jobs_per_process=None,
    desc="datasets x detectors",
    stats=None,
):
    """Run ``jobs``, appending each record to ``csv_path`` as it finishes.

    Parameters
    ----------
    jobs : list of job
        Of one record type (see the module docstring).
    csv_path : str or path, default=None
        CSV of the records; None writes nothing.
    timeout : float, default=None
        Seconds per job before its process is killed (needs ``isolate``).
    threads : int, default=1
        Torch threads of the process(es) that run the jobs; the environment
        (``OMP_NUM_THREADS``, ...) is set for the duration of the call.
    isolate : bool, default=True
        Run the jobs in ``n_jobs`` child processes (each runs its jobs in
        turn and is killed on a timeout); otherwise in this process.
    progress : bool, default=True
        tqdm progress bar.
    resume : bool, default=True
        Skip jobs whose key is already in ``csv_path``; False deletes it.
    retry_failed : bool, default=False
        With ``resume``, re-run the jobs recorded as failed or timed out.
    n_jobs : int, default=1
        Jobs at the same time (with ``isolate``).
    jobs_per_process : int, default=None
        Replace a child process after that many jobs (1: a fresh process per
        job); None keeps it.
    desc : str
        Progress-bar title.
    stats : dict, default=None
        Receives ``"ran"``: the number of jobs run (not read back).

    Returns
    -------
    records : list of record
        One per job, in the order of ``jobs``, the ones read back from an
        earlier run (resumption) included.
    """
    if stats is not None:
        stats["ran"] = 0
    if not jobs:
        return []
    record_type = jobs[0].record_type
    store = ResultsCsv(csv_path, record_type) if csv_path is not None else None
    done = {}
    if store is not None and not resume and store.path.exists():
        store.path.unlink()
    elif store is not None:
        for record in store.read():
            if record.status == "ok" or not retry_failed:
                done[record.key()] = record
    keys = [job.key() for job in jobs]
    by_key = {k: done[k] for k in keys if k in done}
    todo = [(k, j) for k, j in zip(keys, jobs) if k not in by_key]
    if by_key:
        logger.info("resuming: %d of %d jobs already done", len(by_key), len(jobs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(jobs),
            initial=len(by_key),
            unit="job",
            desc=desc,
            dynamic_ncols=True,
        )
    lock = threading.Lock()
    stop = threading.Event()
    ran = []

    def handle(key, record):
        with lock:
            if stop.is_set():  # interrupted: do not record half-run jobs
                return
            by_key[key] = record
            ran.append(key)
            if store is not None:
                store.write(record)
            if bar is not None:
                bar.update(1)
        if record.status != "ok":
            logger.warning(
                "%s: %s - %s", " / ".join(map(str, key)), record.status, record.error
            )

    workers = []
    local = threading.local()

    def drive(key, job):
        if stop.is_set():
            return
        worker = getattr(local, "worker", None)
        if worker is None:
            worker = local.worker = _Worker(threads, jobs_per_process)
            with lock:
                workers.append(worker)
        if bar is not None:
            bar.set_postfix_str(job.label)
        handle(key, worker.run(job, timeout))

    if store is not None:
        store.open()
    try:
        with thread_settings(threads):
            if not isolate:
                _set_torch_threads(threads)
                cache = SplitCache()
                for key, job in todo:
                    if bar is not None:
                        bar.set_postfix_str(job.label)
                    handle(key, job.execute(cache))
            elif n_jobs <= 1:
                for key, job in todo:
                    drive(key, job)
            else:
                _run_parallel(todo, drive, n_jobs, stop, lock, workers)
    finally:
        stop.set()
        for worker in workers:
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - already dead
                pass
        if store is not None:
            store.close()
        if bar is not None:
            bar.close()
        if stats is not None:
            stats["ran"] = len(ran)
    return [by_key[k] for k in keys if k in by_key]


def _run_parallel(todo, drive, n_jobs, stop, lock, workers):
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(n_jobs) as pool:
        futures = [pool.submit(drive, key, job) for key, job in todo]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            with lock:
                for worker in workers:
                    if worker.proc is not None:
                        worker.proc.kill()
            raise

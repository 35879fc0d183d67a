"""Running the benchmark: splits, jobs in child processes, CSV, resumption."""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing as mp
import os
import threading
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

__all__ = ["FIELDS", "prepare_split", "resolve_threads", "run_jobs"]

logger = logging.getLogger("skad.benchmark")

SETTINGS = ("unsupervised", "one-class", "semi-supervised")

#: Columns of ``results.csv``, one row per (dataset, detector, seed, setting).
FIELDS = [
    "suite",
    "group",
    "dataset",
    "detector",
    "seed",
    "setting",
    "status",
    "roc_auc",
    "average_precision",
    "fit_seconds",
    "score_seconds",
    "n_samples",
    "n_samples_original",
    "n_features",
    "n_train",
    "n_train_anomalies",
    "n_test",
    "n_test_anomalies",
    "n_labeled",
    "label_fraction",
    "threads",
    "error",
]
_INT = {
    "seed",
    "n_samples",
    "n_samples_original",
    "n_features",
    "n_train",
    "n_train_anomalies",
    "n_test",
    "n_test_anomalies",
    "n_labeled",
    "threads",
}
_FLOAT = {
    "roc_auc",
    "average_precision",
    "fit_seconds",
    "score_seconds",
    "label_fraction",
}


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


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (in-process runs)
        pass


# ------------------------------------------------------------------ splits
def prepare_split(
    X,
    y,
    seed,
    setting="unsupervised",
    label_fraction=0.1,
    max_samples=10_000,
    test_size=0.3,
):
    """Apply the protocol's subsampling, split and setting to one dataset.

    Returns a dict with ``X_train``, ``X_test``, ``y_train`` (truth of the
    rows the detector is fitted on), ``y_test``, ``labels`` (semi-supervised
    labels in {0, -1} for the training rows, else None) and the sizes.

    * more than ``max_samples`` rows: stratified, seeded subsample;
    * stratified ``1 - test_size`` / ``test_size`` split with
      ``random_state=seed``;
    * ``one-class``: training rows restricted to the normal ones;
    * ``semi-supervised``: ``label_fraction`` of the training anomalies (at
      least one) labelled -1 via :func:`skad.utils.semi_supervised_labels`.
    """
    from sklearn.model_selection import train_test_split

    from skad.utils import semi_supervised_labels

    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    n_original = X.shape[0]
    if max_samples and n_original > max_samples:
        X, _, y, _ = train_test_split(
            X, y, train_size=int(max_samples), stratify=y, random_state=seed
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=seed
    )
    labels = None
    if setting == "one-class":
        keep = y_train == 0
        X_train, y_train = X_train[keep], y_train[keep]
    elif setting == "semi-supervised":
        labels = semi_supervised_labels(y_train, label_fraction, random_state=seed)
    return {
        "X_train": X_train,
        "X_test": X_test,
        "y_train": y_train,
        "y_test": y_test,
        "labels": labels,
        "n_samples": int(X.shape[0]),
        "n_samples_original": int(n_original),
        "n_features": int(X.shape[1]),
        "n_train": int(X_train.shape[0]),
        "n_train_anomalies": int(y_train.sum()),
        "n_test": int(X_test.shape[0]),
        "n_test_anomalies": int(y_test.sum()),
        "n_labeled": 0 if labels is None else int((labels == -1).sum()),
    }


_CACHE: dict = {}


def _split_for(job):
    key = (
        job["task"].name,
        job["seed"],
        job["setting"],
        job["label_fraction"],
        job["max_samples"],
        job["test_size"],
    )
    if key not in _CACHE:
        _CACHE.clear()
        X, y = job["task"].load()
        _CACHE[key] = prepare_split(
            X,
            y,
            job["seed"],
            job["setting"],
            job["label_fraction"],
            job["max_samples"],
            job["test_size"],
        )
    return _CACHE[key]


def _base_record(job):
    return {
        "suite": job["suite"],
        "group": job["task"].group,
        "dataset": job["task"].name,
        "detector": job["spec"].name,
        "seed": job["seed"],
        "setting": job["setting"],
        "label_fraction": job["label_fraction"]
        if job["setting"] == "semi-supervised"
        else None,
        "threads": job["threads"],
    }


def _error_text(exc) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:400]


def execute(job):
    """Run one (dataset, detector, seed) job; never raises."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from skad.benchmark._registry import supports_labels
    from skad.metrics import average_precision, roc_auc

    record = _base_record(job)
    try:
        split = _split_for(job)
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        record.update(status="failed", error="data: " + _error_text(exc))
        return record
    record.update(
        {k: v for k, v in split.items() if k.startswith("n_") and k != "n_labeled"}
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = job["spec"](job["seed"])
            pipe = Pipeline([("scaler", StandardScaler()), ("detector", detector)])
            fit_params = {}
            if split["labels"] is not None and supports_labels(detector):
                fit_params["detector__labels"] = split["labels"]
                record["n_labeled"] = split["n_labeled"]
            else:
                record["n_labeled"] = 0
            t0 = time.perf_counter()
            pipe.fit(split["X_train"], **fit_params)
            record["fit_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            scores = np.asarray(pipe.score_samples(split["X_test"]), dtype=np.float64)
            record["score_seconds"] = time.perf_counter() - t0
        if scores.shape != (split["n_test"],):
            raise ValueError(f"score_samples returned shape {scores.shape}.")
        if not np.isfinite(scores).all():
            raise ValueError(
                f"score_samples returned {int((~np.isfinite(scores)).sum())} "
                "non-finite scores."
            )
        record["roc_auc"] = roc_auc(split["y_test"], scores)
        record["average_precision"] = average_precision(split["y_test"], scores)
        record["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        logger.debug("job failed:\n%s", traceback.format_exc())
        record.update(status="failed", error=_error_text(exc))
    return record


# ----------------------------------------------------------------- workers
def _warm_up_torch():
    """Pay torch's one-time costs (the first optimiser imports torch._dynamo,
    seconds on a busy machine) before any job is timed."""
    import torch

    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([p], lr=1e-3)
    (p * 2).sum().backward()
    opt.step()


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

    _warm_up_torch()

    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            break
        if job is None:
            break
        conn.send(execute(job))


class _Worker:
    """One child process that runs jobs in turn; killed on a timeout."""

    def __init__(self, threads, start_method="spawn"):
        self.threads = threads
        self.ctx = mp.get_context(start_method)
        self.proc = None
        self.conn = None

    def _start(self):
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker_main, args=(child, self.threads), daemon=True
        )
        self.proc.start()
        child.close()
        self.conn = parent
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
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
            code = self.proc.exitcode
            self.close(kill=True)
            record = _base_record(job)
            record.update(status="failed", error=f"job process died (exit code {code})")
            return record
        self.close(kill=True)
        record = _base_record(job)
        record.update(status="timeout", error=f"exceeded the timeout of {timeout:g} s")
        return record

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


# --------------------------------------------------------------------- CSV
def read_csv(path):
    """Rows of a results CSV with numeric columns converted."""
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for k, v in row.items():
                if v in ("", None):
                    row[k] = None
                elif k in _INT:
                    row[k] = int(float(v))
                elif k in _FLOAT:
                    row[k] = float(v)
            rows.append(row)
    return rows


class _CsvAppender:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            with open(self.path, newline="") as fh:
                header = next(csv.reader(fh), [])
            if header != FIELDS:
                raise ValueError(
                    f"{str(self.path)!r} has other columns than this version "
                    "writes; use another --output."
                )
        self.fh = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.fh, FIELDS, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, record):
        row = {}
        for k in FIELDS:
            v = record.get(k)
            if isinstance(v, float) and k in {"roc_auc", "average_precision"}:
                v = f"{v:.6f}"
            elif isinstance(v, float):
                v = f"{v:.6g}"
            row[k] = "" if v is None else v
        self.writer.writerow(row)
        self.fh.flush()

    def close(self):
        self.fh.close()


def job_key(record):
    return (
        str(record["dataset"]),
        str(record["detector"]),
        int(record["seed"]),
        str(record["setting"]),
    )


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
):
    """Run ``jobs`` (dicts), appending each record to ``csv_path``.

    With ``isolate``, jobs run in ``n_jobs`` child processes (each runs its
    jobs in turn and is killed on a timeout); otherwise in this process.

    Returns the records of all selected jobs, the ones read back from an
    earlier run (resumption) included.
    """
    done = {}
    if csv_path is not None and resume and Path(csv_path).exists():
        for row in read_csv(csv_path):
            if row.get("status") == "ok" or not retry_failed:
                done[job_key(row)] = row
    elif csv_path is not None and not resume and Path(csv_path).exists():
        Path(csv_path).unlink()
    keys = [job_key(_base_record(j)) for j in jobs]
    todo = [j for j, k in zip(jobs, keys) if k not in done]
    skipped = [done[k] for k in keys if k in done]
    records = list(skipped)
    if skipped:
        logger.info("resuming: %d of %d jobs already done", len(skipped), len(jobs))
    writer = _CsvAppender(csv_path) if csv_path is not None else None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(jobs),
            initial=len(skipped),
            unit="job",
            desc="datasets x detectors",
            dynamic_ncols=True,
        )
    lock = threading.Lock()
    stop = threading.Event()

    def handle(record):
        record = {k: record.get(k) for k in FIELDS}  # every column, None if unset
        with lock:
            if stop.is_set():  # interrupted: do not record half-run jobs
                return
            records.append(record)
            if writer is not None:
                writer.write(record)
            if bar is not None:
                bar.update(1)
        if record["status"] != "ok":
            logger.warning(
                "%s on %s (seed %s): %s - %s",
                record["detector"],
                record["dataset"],
                record["seed"],
                record["status"],
                record.get("error"),
            )

    workers = []
    local = threading.local()

    def drive(job):
        if stop.is_set():
            return
        worker = getattr(local, "worker", None)
        if worker is None:
            worker = local.worker = _Worker(threads)
            with lock:
                workers.append(worker)
        if bar is not None:
            bar.set_postfix_str(f"{job['task'].name} | {job['spec'].name}")
        handle(worker.run(job, timeout))

    if not isolate:
        _set_torch_threads(threads)
    try:
        if not isolate:
            for job in todo:
                if bar is not None:
                    bar.set_postfix_str(f"{job['task'].name} | {job['spec'].name}")
                handle(execute(job))
        elif n_jobs <= 1:
            for job in todo:
                drive(job)
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed

            with ThreadPoolExecutor(n_jobs) as pool:
                futures = [pool.submit(drive, job) for job in todo]
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
    finally:
        stop.set()
        for worker in workers:
            try:
                worker.close()
            except Exception:  # noqa: BLE001 - already dead
                pass
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
        _CACHE.clear()
    return records

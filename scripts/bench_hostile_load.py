"""Peak memory of ``skad.load`` on hostile files (issue #20).

Builds each hostile file of issue #20 (and a few more) in a temporary folder,
then loads it in a fresh Python process and reports

* the file size;
* the growth of the peak resident set size during the load: the
  high-water mark ``VmHWM`` after the load (reset just before it through
  ``/proc/self/clear_refs``, Linux) minus the resident set ``VmRSS`` before
  it, in a process that has imported skad and loaded a small valid file, so
  that code and libraries are paged in already;
* the time of the load and its outcome (the exception and its message).

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_hostile_load.py
    OMP_NUM_THREADS=1 python scripts/bench_hostile_load.py --old eeee5e7

``--old REV`` also loads every file with ``skad/persistence.py`` of the git
revision ``REV`` (the loader before #20), from format-1 copies of the files,
with the address space limited to ``--old-limit-gib`` so that a loader that
tries to allocate terabytes fails instead of exhausting the machine.

This is a measurement script, not a test: it prints a table (``--rst`` in
the list-table layout of ``docs/reliability.rst``; ``--json`` writes the
results to a file).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import safetensors.numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure the skad of this checkout

import skad  # noqa: E402

MiB = 2**20


# ---------------------------------------------------------------------------
# Forging files
# ---------------------------------------------------------------------------


def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path, text: bytes, blob: bytes, *, fmt: int) -> None:
    """Write a file of format 2 (integrity member) or 1 (tensors_sha256),
    with a valid checksum: an attacker can always recompute it."""
    if fmt == 1:  # edit the text in place: it may be a deliberately odd JSON
        text = re.sub(rb'"format_version":\s*2', b'"format_version":1', text, count=1)
        digest = hashlib.sha256(blob).hexdigest().encode()
        text = b'{"tensors_sha256":"' + digest + b'",' + text[1:]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("skad.json", text, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("tensors.safetensors", blob, compress_type=zipfile.ZIP_STORED)
        if fmt == 2:
            msg = (
                b"skad-model\x00"
                + struct.pack("<Q", len(text))
                + text
                + struct.pack("<Q", len(blob))
                + blob
            )
            record = {"sha256": hashlib.sha256(msg).hexdigest()}
            zf.writestr("integrity.json", json.dumps(record))


def _declare_json_size(path, size: int) -> None:
    """Make the ZIP headers declare ``size`` uncompressed bytes for skad.json."""
    data = bytearray(Path(path).read_bytes())
    for sig, size_at, name_at in ((b"PK\x01\x02", 24, 46), (b"PK\x03\x04", 22, 30)):
        pos = data.find(sig)
        while pos != -1:
            if data[pos + name_at : pos + name_at + 9] == b"skad.json":
                struct.pack_into("<L", data, pos + size_at, size)
            pos = data.find(sig, pos + 1)
    Path(path).write_bytes(bytes(data))


class Forge:
    """Valid files of a few detectors, and edits of them."""

    def __init__(self, folder: Path):
        self.folder = folder
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 4))
        self.sources = {}
        for name, det in (
            ("svdd", skad.DeepSVDD(max_iter=2, device="cpu", random_state=0)),
            (
                "svdd_big",
                skad.DeepSVDD(
                    hidden_layer_sizes=(1024, 1024),
                    max_iter=1,
                    device="cpu",
                    random_state=0,
                ),
            ),
            (
                "dgg_orth",
                skad.DiscriminatorGuidedGAN(
                    transforms="orthogonal", max_iter=1, device="cpu", random_state=0
                ),
            ),
        ):
            data = rng.normal(size=(200, 512)) if name == "svdd_big" else X
            path = folder / f"{name}.src.skad"
            skad.save(det.fit(data), path)
            members = _members(path)
            self.sources[name] = (members["skad.json"], members["tensors.safetensors"])

    def make(
        self, name, source, *, edit=None, text=None, blob=None, tensors=None, after=None
    ):
        src_text, src_blob = self.sources[source]
        if tensors is not None:  # edit the tensors: {name: array} -> None
            arrays = safetensors.numpy.load(src_blob)
            tensors(arrays)
            src_blob = safetensors.numpy.save(arrays)
        if edit is not None:
            meta = json.loads(src_text)
            edit(meta)
            src_text = json.dumps(meta).encode()
        src_text = text(src_text) if text is not None else src_text
        src_blob = blob if blob is not None else src_blob
        paths = {}
        for fmt in (2, 1):
            path = self.folder / f"{name}.v{fmt}.skad"
            _write(path, src_text, src_blob, fmt=fmt)
            if after is not None:
                after(path)
            paths[fmt] = path
        return paths


def _set(path_in_meta, value):
    def edit(meta):
        node = meta
        for k in path_in_meta[:-1]:
            node = node[k]
        node[path_in_meta[-1]] = value

    return edit


def _both(*edits):
    def edit(meta):
        for e in edits:
            e(meta)

    return edit


def _features(d):
    """``n_features_in_`` and ``input_shape_`` set to ``d`` consistently (the
    shared attributes must agree, or the file is refused before any probe)."""
    return _both(
        _set(("attributes", "n_features_in_"), d),
        _set(("attributes", "input_shape_"), {"__tuple__": [d]}),
    )


def _median(d):
    """A ``training_median_`` of ``d`` features in the tensors."""

    def edit(arrays):
        arrays["training_median_"] = np.zeros(d)

    return edit


def _whitespace(text: bytes) -> bytes:
    return text[:-1] + b" " * (256 * MiB) + b"}"


def _deep(text: bytes) -> bytes:
    deep = b"[" * 600 + b"1" + b"]" * 600
    return text.replace(b'"best_loss_":', b'"x_":' + deep + b',"best_loss_":', 1)


def _header_bomb() -> bytes:
    header = {
        "network_/center": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 128]}
    }
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(128)


def cases(forge: Forge):
    sizes = ("params", "hidden_layer_sizes")
    return [
        ("valid DeepSVDD (4 features, 64-32)", forge.make("valid", "svdd")),
        (
            "valid DeepSVDD (512 features, 1024-1024-32)",
            forge.make("valid_big", "svdd_big"),
        ),
        (
            "skad.json inflating to 256 MiB of whitespace",
            forge.make("whitespace", "svdd", text=_whitespace),
        ),
        (
            "same, ZIP headers declaring 1000 bytes",
            forge.make(
                "whitespace_lying",
                "svdd",
                text=_whitespace,
                after=lambda p: _declare_json_size(p, 1000),
            ),
        ),
        (
            "hidden_layer_sizes=(8000, 8000)",
            forge.make("h8000", "svdd", edit=_set(sizes, {"__tuple__": [8000] * 2})),
        ),
        (
            "hidden_layer_sizes=(16000, 16000)",
            forge.make("h16000", "svdd", edit=_set(sizes, {"__tuple__": [16000] * 2})),
        ),
        (
            "hidden_layer_sizes=(10**12,)",
            forge.make("h1e12", "svdd", edit=_set(sizes, {"__tuple__": [10**12]})),
        ),
        (
            'ndarray attribute of dtype "V8000000"',
            forge.make(
                "v8000000",
                "svdd",
                edit=_set(
                    ("attributes", "center_"),
                    {"__ndarray__": "center_", "dtype": "V8000000"},
                ),
            ),
        ),
        (
            'string array of dtype "<U100000000", 4 items',
            forge.make(
                "ubomb",
                "svdd",
                edit=_set(
                    ("attributes", "feature_names_in_"),
                    {
                        "__ndarray_str__": ["a"] * 4,
                        "dtype": "<U100000000",
                        "shape": [4],
                    },
                ),
            ),
        ),
        ("JSON nested 600 deep", forge.make("deep", "svdd", text=_deep)),
        (
            "largest skad.json accepted: 4 MiB, loss_curve_ of 800,000 numbers",
            forge.make(
                "long_curve",
                "svdd",
                edit=_set(("attributes", "loss_curve_"), [1.5] * 800_000),
            ),
        ),
        (
            "safetensors header declaring shape (10**12,)",
            forge.make("header_bomb", "svdd", blob=_header_bomb()),
        ),
        (
            "n_features_in_=2**24 (and input_shape_)",
            forge.make("nfeat", "svdd", edit=_features(2**24)),
        ),
        (
            "DiscriminatorGuidedGAN, n_transforms=10**9",
            forge.make(
                "dgg_k",
                "dgg_orth",
                edit=_both(
                    _set(("params", "n_transforms"), 10**9),
                    _set(("attributes", "n_transforms_"), 10**9),
                ),
            ),
        ),
        (
            "DiscriminatorGuidedGAN (orthogonal), n_features_in_=50000 (and "
            "input_shape_, training_median_)",
            forge.make(
                "dgg_d", "dgg_orth", edit=_features(50000), tensors=_median(50000)
            ),
        ),
    ]


# ---------------------------------------------------------------------------
# Measuring in a fresh process
# ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import importlib.util, json, resource, sys, time, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    warm, path, old, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])

    import skad
    if old:
        spec = importlib.util.spec_from_file_location("old_persistence", old)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        load = module.load
    else:
        load = skad.load
    load(warm)
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    base = status("VmRSS")
    print(json.dumps({"base_kib": base}), flush=True)
    start = time.perf_counter()
    try:
        load(path)
        outcome = "loaded"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {str(exc).replace(path, '<file>')}"
    seconds = time.perf_counter() - start
    peak = status("VmHWM") - base
    print(json.dumps({"peak_kib": peak, "seconds": seconds, "outcome": outcome}))
    """
)


def measure(path, warm, *, old=None, limit=0, timeout=120.0):
    """Run one load in a fresh process; past ``timeout`` seconds the process
    is killed and its largest sampled resident set is reported."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", CHILD, str(warm), str(path), old or "", str(limit)]
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    ) as proc:
        first = proc.stdout.readline()
        if not first:
            return {"peak_kib": None, "seconds": None, "outcome": proc.stderr.read()}
        base = json.loads(first)["base_kib"]
        child = psutil.Process(proc.pid)
        start, largest = time.perf_counter(), 0
        while proc.poll() is None and time.perf_counter() - start < timeout:
            with contextlib.suppress(psutil.Error):
                largest = max(largest, child.memory_info().rss // 1024)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            return {
                "peak_kib": max(0, largest - base),
                "seconds": timeout,
                "outcome": f"still running after {timeout:.0f} s, killed",
            }
        out = proc.stdout.read().strip().splitlines()
        if proc.returncode != 0 or not out:
            return {"peak_kib": None, "seconds": None, "outcome": proc.stderr.read()}
        return json.loads(out[-1])


def _short(outcome: str, n=110) -> str:
    outcome = " ".join(outcome.split())
    return outcome if len(outcome) <= n else outcome[: n - 3] + "..."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="git revision of the loader to compare with")
    parser.add_argument("--old-limit-gib", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="per load")
    parser.add_argument("--only", help="run the cases whose label contains this")
    parser.add_argument("--rst", action="store_true", help="print an RST table")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        old_file = None
        if args.old:
            source = subprocess.run(
                ["git", "show", f"{args.old}:skad/persistence.py"],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
            old_file = folder / "old_persistence.py"
            old_file.write_text(source)
        forge = Forge(folder)
        rows = []
        all_cases = cases(forge)
        warm = all_cases[0][1]
        for label, paths in all_cases:
            if args.only and args.only not in label:
                continue
            row = {"case": label, "file_kib": paths[2].stat().st_size / 1024}
            row["new"] = measure(paths[2], warm[2], timeout=args.timeout)
            if old_file is not None:
                limit = int(args.old_limit_gib * 2**30)
                row["old"] = measure(
                    paths[1],
                    warm[1],
                    old=str(old_file),
                    limit=limit,
                    timeout=args.timeout,
                )
            rows.append(row)
            new = row["new"]
            peak = "n/a" if new["peak_kib"] is None else f"{new['peak_kib'] / 1024:.1f}"
            line = f"{label:58s} {row['file_kib']:9.1f} KiB  +{peak:>7s} MiB"
            if "old" in row and row["old"]["peak_kib"] is not None:
                line += f"  (old: +{row['old']['peak_kib'] / 1024:.1f} MiB)"
            full = new["peak_kib"] is None
            print(line, "|", new["outcome"] if full else _short(new["outcome"], 90))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.rst:
        print()
        print(".. list-table::\n   :header-rows: 1\n")
        head = ["hostile file", "file size", "peak RSS growth"]
        if args.old:
            head.append("before #20")
        head.append("outcome")
        print("   * - " + "\n     - ".join(head))
        for row in rows:
            new = row["new"]
            cells = [
                row["case"],
                f"{row['file_kib']:.0f} KiB",
                f"{new['peak_kib'] / 1024:.1f} MiB",
            ]
            if args.old:
                old = row["old"]
                cells.append(
                    "n/a"
                    if old["peak_kib"] is None
                    else f"{old['peak_kib'] / 1024:.0f} MiB, "
                    + _short(old["outcome"].split(":")[0], 40)
                )
            cells.append(_short(new["outcome"]))
            print("   * - " + "\n     - ".join(cells))


if __name__ == "__main__":
    main()

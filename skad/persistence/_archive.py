"""The container: atomic ZIP writing, bounded reading, checksum and
signature, bounded JSON parsing and the safetensors member."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import stat
import struct
import zipfile

import torch

from skad.persistence._common import (
    _CHECK_CHUNK,
    _DIGEST_PREFIX,
    _INTEGRITY_NAME,
    _JSON_NAME,
    _MAX_CENTRAL_DIRECTORY_BYTES,
    _MAX_INTEGRITY_BYTES,
    _MAX_JSON_BYTES,
    _MAX_JSON_CONTAINERS,
    _MAX_JSON_DEPTH,
    _MAX_NAME_CHARS,
    _MAX_NDIM,
    _MAX_TENSOR_HEADER_BYTES,
    _MAX_TENSORS,
    _READ_CHUNK,
    _TENSORS_NAME,
    _ZIP_FLAGS_ALLOWED,
    ModelFileError,
    _Invalid,
    _is_int,
)


def _integrity(json_bytes: bytes, tensor_bytes, key: bytes | None) -> dict:
    """SHA-256 digest (and HMAC-SHA256 tag with ``key``) of the content."""
    parts = (
        _DIGEST_PREFIX,
        struct.pack("<Q", len(json_bytes)),
        json_bytes,
        struct.pack("<Q", len(tensor_bytes)),
        tensor_bytes,
    )
    digest = hashlib.sha256()
    tag = hmac.new(key, digestmod=hashlib.sha256) if key is not None else None
    for part in parts:
        digest.update(part)
        if tag is not None:
            tag.update(part)
    out = {"sha256": digest.hexdigest()}
    if tag is not None:
        out["hmac_sha256"] = tag.hexdigest()
    return out


def _write_atomic(path: str, members) -> None:
    """Write the ZIP archive to a temporary file next to ``path``, then
    ``os.replace`` it: an interrupted save leaves any old file intact."""
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for open()
            break
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
    try:
        with contextlib.suppress(OSError):  # keep the permissions of a file
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # we replace
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w") as zf:
                for name, data, compress_type in members:
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = compress_type
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable (POSIX)
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def _check_json_bytes(raw: bytes, limit: int, what: str, max_depth=_MAX_JSON_DEPTH):
    """Size, nesting depth and container count of JSON text, before parsing.

    String literals are blanked out, then the brackets are counted: a file
    cannot make the parser (or the decoder) recurse deeply or build millions
    of containers.
    """
    if len(raw) > limit:
        raise _Invalid(f"{what} has {len(raw)} bytes, more than the {limit} allowed")
    bare = _STRING_TOKEN.sub(b"", raw)
    n_open = bare.count(b"[") + bare.count(b"{")
    n_close = bare.count(b"]") + bare.count(b"}")
    if n_open > _MAX_JSON_CONTAINERS or n_close > _MAX_JSON_CONTAINERS:
        raise _Invalid(
            f"{what} holds more than {_MAX_JSON_CONTAINERS} JSON arrays or objects"
        )
    if n_open > max_depth:
        depth = deepest = 0
        for m in _BRACKET.finditer(bare):
            depth += 1 if m.group() in b"[{" else -1
            deepest = max(deepest, depth)
        if deepest > max_depth:
            raise _Invalid(
                f"{what} is nested {deepest} levels deep (at most {max_depth} allowed)"
            )


def _parse_json(raw: bytes, what: str, path, limit=_MAX_JSON_BYTES, depth=None):
    try:
        _check_json_bytes(raw, limit, what, depth or _MAX_JSON_DEPTH)
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {exc}.") from None

    def no_duplicates(pairs):
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ModelFileError(f"{path}: {what} repeats a key.")
        return out

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except ModelFileError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise ModelFileError(f"{path}: {what} is corrupted: {exc}") from exc


def _check_end_record(fh, size: int, path) -> None:
    """Bound the ZIP central directory before ``zipfile`` reads it.

    ``zipfile`` reads the end record from the last 22 bytes when the archive
    has no comment (skad writes none) and the ZIP64 record just before it;
    the same records are checked here.
    """
    bad = (
        f"{path} is not a readable skad model file (truncated or corrupted?): "
        "it does not end with a ZIP end record"
    )
    if size < 22:
        raise ModelFileError(bad + ".")
    fh.seek(size - 22)
    end = fh.read(22)
    sig, _, _, _, n_entries, cd_size, _, comment = struct.unpack("<4s4H2LH", end)
    if sig != b"PK\x05\x06" or comment != 0:
        raise ModelFileError(bad + ".")
    if size >= 22 + 20 + 56:
        fh.seek(size - 42)
        loc_sig = fh.read(20)[:4]
        if loc_sig == b"PK\x06\x07":
            fh.seek(size - 42 - 56)
            rec = fh.read(56)
            fields = struct.unpack("<4sQ2H2L4Q", rec)
            if fields[0] == b"PK\x06\x06":
                n_entries, cd_size = fields[7], fields[8]
    if n_entries > 3 or cd_size > _MAX_CENTRAL_DIRECTORY_BYTES:
        raise ModelFileError(
            f"{path} is not a skad model file: its ZIP directory declares "
            f"{n_entries} members in {cd_size} bytes (at most 3 members in "
            f"{_MAX_CENTRAL_DIRECTORY_BYTES} bytes)."
        )


def _read_member(zf, info, limit: int, path, what: str, size_on_disk: int):
    """Read one member through a capped stream into a bytearray."""
    if info.file_size > limit:
        raise ModelFileError(
            f"{path}: {what} declares {info.file_size} bytes, more than the "
            f"{limit} allowed."
        )
    if info.compress_size > size_on_disk:
        raise ModelFileError(f"{path}: {what} declares more bytes than the file has.")
    out = bytearray(info.file_size)
    view = memoryview(out)
    pos = 0
    try:
        with zf.open(info) as stream:
            while pos < info.file_size:
                chunk = stream.read(min(_READ_CHUNK, info.file_size - pos))
                if not chunk:
                    break
                view[pos : pos + len(chunk)] = chunk
                pos += len(chunk)
            extra = stream.read(1)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: {what} is corrupted (truncated or modified?): {exc}"
        ) from exc
    except Exception as exc:  # zlib.error and the like
        raise ModelFileError(
            f"{path}: {what} is corrupted (truncated or modified?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        view.release()
    if pos != info.file_size or extra:
        raise ModelFileError(f"{path}: {what} does not have its declared size.")
    return out


def _read_archive(fh, path):
    """The raw bytes of the members: (json, tensors, integrity or None)."""
    size = os.fstat(fh.fileno()).st_size
    _check_end_record(fh, size, path)
    fh.seek(0)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ModelFileError(
            f"{path} is not a readable skad model file (truncated or corrupted?): {exc}"
        ) from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ModelFileError(f"{path}: the archive repeats a member name.")
        if set(names) not in (
            {_JSON_NAME, _TENSORS_NAME},
            {_JSON_NAME, _TENSORS_NAME, _INTEGRITY_NAME},
        ):
            raise ModelFileError(
                f"{path} is a ZIP file but not a skad model file: it holds "
                f"{sorted(names)[:5]}, not {_JSON_NAME}, {_TENSORS_NAME} and "
                f"{_INTEGRITY_NAME}."
            )
        by_name = {i.filename: i for i in infos}
        for info in infos:
            if info.flag_bits & ~_ZIP_FLAGS_ALLOWED:
                raise ModelFileError(
                    f"{path}: member {info.filename} is encrypted or uses ZIP "
                    f"features skad does not write (flags {info.flag_bits:#x})."
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ModelFileError(
                    f"{path}: member {info.filename} uses compression method "
                    f"{info.compress_type}; skad files use stored or deflate only."
                )
        tensors_info = by_name[_TENSORS_NAME]
        if tensors_info.compress_type != zipfile.ZIP_STORED or (
            tensors_info.compress_size != tensors_info.file_size
        ):
            raise ModelFileError(
                f"{path}: {_TENSORS_NAME} is compressed; skad stores it "
                "uncompressed so that it cannot inflate beyond the file."
            )
        text = _read_member(
            zf, by_name[_JSON_NAME], _MAX_JSON_BYTES, path, _JSON_NAME, size
        )
        integrity = None
        if _INTEGRITY_NAME in by_name:
            integrity = _read_member(
                zf,
                by_name[_INTEGRITY_NAME],
                _MAX_INTEGRITY_BYTES,
                path,
                _INTEGRITY_NAME,
                size,
            )
        blob = _read_member(zf, tensors_info, size, path, _TENSORS_NAME, size)
    return bytes(text), blob, integrity


def _verify_integrity(text, blob, integrity, key, path) -> None:
    if integrity is None:
        if key is not None:
            raise ModelFileError(
                f"{path} is not signed, so it cannot be verified with the key; "
                "it was saved without key= (or its signature was removed)."
            )
        return  # a format-1 file: checked against tensors_sha256 later
    record = _parse_json(bytes(integrity), _INTEGRITY_NAME, path, depth=1)
    hexdigest = re.compile(r"[0-9a-f]{64}")
    if (
        not isinstance(record, dict)
        or not set(record) <= {"sha256", "hmac_sha256"}
        or not all(
            isinstance(v, str) and hexdigest.fullmatch(v) for v in record.values()
        )
        or "sha256" not in record
    ):
        raise ModelFileError(f"{path}: {_INTEGRITY_NAME} is corrupted.")
    expected = _integrity(text, blob, key)
    if key is not None:
        if "hmac_sha256" not in record:
            raise ModelFileError(
                f"{path} is not signed, so it cannot be verified with the key; "
                "it was saved without key= (or its signature was removed)."
            )
        if not hmac.compare_digest(record["hmac_sha256"], expected["hmac_sha256"]):
            raise ModelFileError(
                f"{path}: the signature does not verify with this key: the file "
                "was modified, or signed with another key."
            )
    if not hmac.compare_digest(record["sha256"], expected["sha256"]):
        raise ModelFileError(
            f"{path}: the content does not match its SHA-256 checksum; the file "
            "was truncated or modified."
        )


_ST_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}

for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _ST_DTYPES[_name] = getattr(torch, _attr)

_FLOAT_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64}


class _TensorFile:
    """The safetensors member: header checked on construction, data viewed
    (not copied) on demand."""

    def __init__(self, blob: bytearray, path):
        self.blob = blob
        self.path = path
        if len(blob) < 8:
            self._bad("it is shorter than its header")
        n = int.from_bytes(bytes(blob[:8]), "little")
        if n < 2 or n > min(_MAX_TENSOR_HEADER_BYTES, len(blob) - 8):
            self._bad(f"its header declares {n} bytes")
        header = _parse_json(
            bytes(blob[8 : 8 + n]), f"the header of {_TENSORS_NAME}", path, depth=3
        )
        if not isinstance(header, dict):
            self._bad("its header is not a JSON object")
        extra = header.pop("__metadata__", None)
        if extra is not None and not (
            isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values())
        ):
            self._bad("its __metadata__ is not a map of strings")
        if len(header) > _MAX_TENSORS:
            self._bad(f"it holds {len(header)} tensors (at most {_MAX_TENSORS})")
        start = 8 + n
        data_len = len(blob) - start
        self.specs: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        spans = []
        for name, spec in header.items():
            if len(name) > _MAX_NAME_CHARS:
                self._bad("a tensor name is too long")
            if not isinstance(spec, dict) or set(spec) != {
                "dtype",
                "shape",
                "data_offsets",
            }:
                self._bad(f"the entry of tensor {name!r} is malformed")
            dtype = (
                _ST_DTYPES.get(spec["dtype"])
                if isinstance(spec["dtype"], str)
                else None
            )
            if dtype is None:
                self._bad(
                    f"tensor {name!r} has the unsupported dtype {spec['dtype']!r}"
                )
            shape, offsets = spec["shape"], spec["data_offsets"]
            if (
                not isinstance(shape, list)
                or len(shape) > _MAX_NDIM
                or not all(_is_int(s) and s >= 0 for s in shape)
            ):
                self._bad(f"tensor {name!r} has the invalid shape {shape!r}")
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len
            ):
                self._bad(f"tensor {name!r} has invalid data offsets {offsets!r}")
            numel = math.prod(shape)
            nbytes = numel * dtype.itemsize
            if offsets[1] - offsets[0] != nbytes:
                self._bad(
                    f"tensor {name!r} of shape {tuple(shape)} and dtype "
                    f"{spec['dtype']} needs {nbytes} bytes but has "
                    f"{offsets[1] - offsets[0]}"
                )
            self.specs[name] = (dtype, tuple(shape), start + offsets[0], numel)
            spans.append((offsets[0], offsets[1]))
        spans.sort()
        pos = 0
        for a, b in spans:
            if a != pos:
                self._bad("its tensors overlap or leave holes in the data")
            pos = b
        if pos != data_len:
            self._bad("it has bytes that belong to no tensor")
        self.total_elements = sum(s[3] for s in self.specs.values())

    def _bad(self, what):
        raise ModelFileError(f"{self.path}: {_TENSORS_NAME} is invalid: {what}.")

    def view(self, key) -> torch.Tensor:
        """The tensor's data as a view of the file's bytes (no copy)."""
        dtype, shape, offset, numel = self.specs[key]
        if numel == 0:
            return torch.empty(shape, dtype=dtype)
        buf = self.blob
        if offset % dtype.itemsize:  # misaligned: copy
            buf = bytearray(self.blob[offset : offset + numel * dtype.itemsize])
            offset = 0
        return torch.frombuffer(buf, dtype=dtype, count=numel, offset=offset).view(
            shape
        )

    def check_values(self, key, where, *, nonnegative=False) -> None:
        """Finite floats (non-negative if asked), booleans 0 or 1."""
        t = self.view(key).reshape(-1)
        for i in range(0, t.numel(), _CHECK_CHUNK):
            part = t[i : i + _CHECK_CHUNK]
            if t.dtype in _FLOAT_DTYPES and not bool(torch.isfinite(part).all()):
                raise ModelFileError(
                    f"{self.path}: {where} holds NaN or infinite values; a model "
                    "with non-finite weights computes non-finite scores, which "
                    "predict would flag as outliers whatever the row."
                )
            if nonnegative and bool((part < 0).any()):
                raise ModelFileError(f"{self.path}: {where} holds negative values.")
            if t.dtype == torch.bool and bool((part.view(torch.uint8) > 1).any()):
                raise ModelFileError(f"{self.path}: {where} holds invalid booleans.")

"""Save and restore any pytree (a ``TrainState``, a population, plain params) safely.

A checkpoint is one `safetensors <https://huggingface.co/docs/safetensors>`_ file:

* 8 bytes: the header length ``n``, little-endian ``uint64``;
* ``n`` bytes: a JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]},
  "__metadata__": {str: str}}``, padded with spaces to a multiple of 8;
* the data: each array's raw little-endian bytes, in tree order, with no gaps.

Each array is named by its path in the tree (``params/dense_1/kernel``,
``opt_state/1/0/mu/dense/bias``), so the file reads in any safetensors reader. jaxnn's
own facts live in ``__metadata__``: the format version, the jaxnn version, the step,
the tree structure (path, shape and dtype of every leaf), a SHA-256 checksum of the data,
a SHA-256 checksum of the header itself, and the user's metadata as a JSON string.

Guarantees:

* No pickle and no code execution: a file is parsed as JSON and raw bytes, nothing else.
* Every dtype round-trips bit-exactly (bfloat16 and float8 through ``ml_dtypes``, NaN
  payloads and ``-0.0`` included); typed PRNG keys are stored as their key data and
  rebuilt with their implementation.
* Writes are atomic: a temporary file in the same directory is written, flushed,
  ``fsync``-ed and renamed over the target, and the directory is ``fsync``-ed. A
  process killed mid-save leaves the previous checkpoint intact (and, at worst, a
  stray ``.<name>.<random>.tmp`` file beside it).
* Reading validates before it allocates: the header length is capped (and never
  larger than the file), every offset, shape and dtype is checked, and the data is
  read in bounded pieces whose sizes the file's length has already confirmed, so
  memory stays linear in the size of the file (parsing a JSON header costs at most a
  few tens of bytes per header byte). Any damaged or hostile file raises one
  :class:`CheckpointError`.
* Saving the same tree twice gives identical bytes.

Reading needs no template: ``restore(path)`` returns the stored tree as nested dicts
keyed by the stored names (``tree["params"]["dense"]["kernel"]``). Plain safetensors
files, as PyTorch or Hugging Face write them (without jaxnn's metadata, hence without
its checksums), read into a flat dict of arrays, or into a template by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Mapping
from typing import Any, BinaryIO, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from jaxnn._version import __version__

__all__ = ["CheckpointError", "read_metadata", "restore", "save"]

PathLike = str | os.PathLike

FORMAT = "jaxnn.checkpoint"
"""The value of ``__metadata__["format"]`` in every jaxnn checkpoint."""
FORMAT_VERSION = 1
"""The version of the layout of ``__metadata__``; bumped on incompatible changes."""
MAX_HEADER_BYTES = 100 * 2**20
"""The largest header a reader accepts (100 MiB), whatever the file claims."""
MAX_RANK = 64
"""The largest number of axes a reader accepts for one array."""
_MAX_LISTED = 5
"""How many mismatches a structure error lists before counting the rest."""
_JAXNN_FIELDS = frozenset(
    {"format_version", "jaxnn_version", "structure", "checksum", "header_checksum", "user"}
)
"""Metadata fields of a jaxnn checkpoint: a file with none of them (and no jaxnn format)
is a plain safetensors file. One damaged field cannot make a checkpoint look plain."""

# safetensors dtype codes and the NumPy dtypes they stand for.
_CODES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "C64": np.dtype(np.complex64),
}
_CODE_OF: dict[str, str] = {dtype.name: code for code, dtype in _CODES.items()}
_KEY = "key"
"""The dtype recorded in the structure for a typed PRNG key leaf."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: damaged, hostile, or for another tree.

    The message names the file, says what is wrong (by path, for structure
    mismatches) and what to do about it.
    """


# --------------------------------------------------------------------------- names


def _key_name(entry: Any) -> str:
    if isinstance(entry, jax.tree_util.DictKey):
        return str(entry.key)
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return str(entry.idx)
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return str(entry.key)
    return str(entry)


def _leaf_names(paths: list[tuple[Any, ...]]) -> list[str]:
    """Readable, unique names for leaf paths: ``params/dense_1/kernel``.

    Two paths that read the same (a dict key ``"a/b"`` beside ``{"a": {"b": ...}}``)
    are told apart by a suffix ``_1``, ``_2``, ... that no other leaf uses; the first
    in tree order keeps the plain name. The root leaf of a bare array is ``value``.
    """
    raw = ["/".join(_key_name(e) for e in path) if path else "value" for path in paths]
    taken = {*raw, "__metadata__"}
    seen: set[str] = set()
    names = []
    for name in raw:
        if name not in seen and name != "__metadata__":
            seen.add(name)
            names.append(name)
            continue
        i = 1
        while f"{name}_{i}" in taken:
            i += 1
        taken.add(f"{name}_{i}")
        names.append(f"{name}_{i}")
    return names


# --------------------------------------------------------------------------- leaves


def _is_key(dtype: Any) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(dtype: Any) -> str:
    """The implementation name (``threefry2x32``) of a typed key dtype."""
    trailing = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct((), dtype)).shape
    dummy = jax.random.wrap_key_data(np.zeros(trailing, np.uint32), dtype=dtype)
    return str(jax.random.key_impl(dummy))


def _spec(leaf: Any, name: str, what: str) -> tuple[tuple[int, ...], Any]:
    """The shape and dtype of a leaf: an array, a ``ShapeDtypeStruct`` or a scalar."""
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(int(d) for d in leaf.shape), leaf.dtype
    if isinstance(leaf, bool | int | float | complex):
        return (), jax.dtypes.canonicalize_dtype(np.result_type(type(leaf)))
    raise TypeError(
        f"{what}: the leaf at {name!r} is a {type(leaf).__name__} ({leaf!r}); a checkpoint "
        "holds arrays, jax.ShapeDtypeStructs and Python numbers only. Keep other values "
        "out of the tree (pass them as metadata=... instead)."
    )


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


def _check_supported(dtype: np.dtype, name: str, what: str) -> None:
    if dtype.name not in _CODE_OF:
        supported = ", ".join(sorted(_CODE_OF))
        raise TypeError(
            f"{what}: the leaf at {name!r} has dtype {dtype.name}, which a checkpoint "
            f"cannot store. Supported dtypes: {supported}. Cast the leaf to one of them."
        )


def _host_bytes(leaf: Any, dtype: np.dtype) -> np.ndarray:
    """The leaf as a C-contiguous little-endian NumPy array."""
    array = np.asarray(leaf, dtype=dtype) if not hasattr(leaf, "dtype") else np.asarray(leaf)
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")


def _raw(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array (``memoryview`` rejects ml_dtypes directly)."""
    return memoryview(array.reshape(-1).view(np.uint8))


# --------------------------------------------------------------------------- json


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{_clip(text, 40)} is too large for a JSON number")
    return value


def _loads(text: str | bytes) -> Any:
    """Strict JSON: no duplicate keys, no NaN/Infinity; errors become ``ValueError``."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
            parse_float=_finite,
        )
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else kinds.get(type(value), "object")


def _dumps(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _sha256(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("ascii")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _header_digest(header: dict[str, Any]) -> str:
    """The checksum of a header, over its canonical JSON without ``header_checksum``."""
    meta = {k: v for k, v in header["__metadata__"].items() if k != "header_checksum"}
    return _sha256(_dumps({**header, "__metadata__": meta}))


# --------------------------------------------------------------------------- save


def _find_step(tree: Any) -> Any:
    """The ``step`` field of a NamedTuple or top-level dict, as JSON; else ``None``."""
    if isinstance(tree, tuple) and "step" in getattr(tree, "_fields", ()):
        value = tree.step
    elif isinstance(tree, Mapping) and "step" in tree:
        value = tree["step"]
    else:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, jax.ShapeDtypeStruct) or not hasattr(value, "dtype"):
        return None
    if _is_key(value.dtype) or not np.issubdtype(np.dtype(value.dtype), np.integer):
        return None
    if math.prod(np.shape(value)) > 4096:
        return None
    return np.asarray(value).tolist()


def _empty_dicts(tree: Any) -> list[str]:
    """The paths of the empty dicts inside ``tree`` (not the root), in tree order."""
    found = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, dict) and not x
    )[0]
    return [
        "/".join(_key_name(e) for e in path)
        for path, leaf in found
        if path and isinstance(leaf, dict)
    ]


def save(path: PathLike, tree: Any, metadata: Mapping[str, Any] | None = None) -> None:
    """Saves a pytree of arrays to ``path``, atomically, as a safetensors file.

    Any pytree works: nested dicts, lists and tuples, NamedTuples (a ``TrainState``,
    optax states), ``None`` leaves, Python numbers and typed PRNG keys. Each array is
    stored under its path in the tree, e.g. ``params/dense_1/kernel``.

    The file is written to a temporary file in the same directory, flushed,
    ``fsync``-ed and renamed over ``path``, so a reader (or a crash) sees either the
    old checkpoint or the new one, never a mix.

    Args:
        path: the file to write; its directory must exist. ``.safetensors`` is the
            customary suffix.
        tree: the pytree to save. Its leaves are arrays (JAX or NumPy, any shape),
            Python numbers (stored with JAX's default dtype for them) or typed PRNG
            keys. If it has a ``step`` field (a NamedTuple such as ``TrainState``, or
            a dict), the step is also recorded in the metadata.
        metadata: extra JSON-serialisable facts to keep beside the arrays (an epoch,
            a config, a metric); read them back with :func:`read_metadata`.

    Raises:
        TypeError: for a leaf that is not an array or number, a dtype a checkpoint
            cannot store, or ``metadata`` that is not a JSON-serialisable mapping.
        ValueError: if the tree has so many leaves that its header would pass
            ``MAX_HEADER_BYTES`` (100 MiB).
        OSError: if the file cannot be written (missing directory, no space, ...);
            the previous checkpoint at ``path`` is then left untouched.

    Example:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> tree = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}
        >>> path = os.path.join(tempfile.mkdtemp(), "params.safetensors")
        >>> save(path, tree, metadata={"epoch": 3})
        >>> read_metadata(path)["user"]
        {'epoch': 3}
        >>> restore(path, tree)["dense"]["kernel"].shape
        (2, 3)
    """
    what = f"save({os.fspath(path)!r})"
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(
            f"{what}: metadata must be a dict of JSON-serialisable values, got "
            f"{type(metadata).__name__}. Pass e.g. metadata={{'epoch': 3}}."
        )
    try:
        user = _dumps(dict(metadata or {}))
    except (TypeError, ValueError, RecursionError) as e:
        raise TypeError(
            f"{what}: metadata must be JSON-serialisable (str keys; numbers, strings, "
            f"lists, dicts; no NaN), but {e}. Convert arrays with .tolist() and "
            "other values with str()."
        ) from None

    leaves_with_paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    names = _leaf_names([p for p, _ in leaves_with_paths])
    structure: list[dict[str, Any]] = []
    tensors: dict[str, dict[str, Any]] = {}
    arrays: list[np.ndarray] = []
    offset = 0
    data_hash = hashlib.sha256()
    for name, (_, leaf) in zip(names, leaves_with_paths, strict=True):
        shape, dtype = _spec(leaf, name, what)
        if isinstance(leaf, jax.ShapeDtypeStruct):
            raise TypeError(
                f"{what}: the leaf at {name!r} is a ShapeDtypeStruct, which holds no data. "
                "Save a tree of arrays (pass ShapeDtypeStructs to restore's like=... only)."
            )
        entry: dict[str, Any] = {"path": name, "shape": list(shape)}
        if _is_key(dtype):
            entry["dtype"] = _KEY
            entry["impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
            dtype = leaf.dtype
        else:
            entry["dtype"] = _dtype_name(dtype)
        dtype = np.dtype(dtype)
        _check_supported(dtype, name, what)
        array = _host_bytes(leaf, dtype)
        data_hash.update(_raw(array))
        tensors[name] = {
            "dtype": _CODE_OF[dtype.name],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        structure.append(entry)
        arrays.append(array)

    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "jaxnn_version": __version__,
        "structure": _dumps(structure),
        "checksum": "sha256:" + data_hash.hexdigest(),
        "user": user,
    }
    step = _find_step(tree)
    if step is not None:
        meta["step"] = _dumps(step)
    empty = _empty_dicts(tree)
    if empty:  # for restore(path) without a template: {} entries, such as a model_state
        meta["empty"] = _dumps(empty)
    header: dict[str, Any] = {**tensors, "__metadata__": meta}
    meta["header_checksum"] = _header_digest(header)
    text = _dumps(header).encode("ascii")
    text += b" " * (-len(text) % 8)
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(
            f"{what}: the tree has {len(names)} leaves, whose header would take "
            f"{len(text)} bytes, over the limit of {MAX_HEADER_BYTES}. Save the tree in "
            "several parts."
        )
    _write_atomically(path, struct.pack("<Q", len(text)) + text, arrays)


def _write_atomically(path: PathLike, head: bytes, arrays: list[np.ndarray]) -> None:
    target = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(target)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for array in arrays:
                f.write(_raw(array))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- read


class _Invalid(Exception):
    """A reason a file is not a valid checkpoint; becomes one CheckpointError.

    ``plain`` marks a reason found in a plain safetensors file (not jaxnn's)."""

    def __init__(self, reason: str, plain: bool = False):
        super().__init__(reason)
        self.plain = plain


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_shape(shape: Any, where: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise _Invalid(f"{where} has shape {_short(shape)}, not a list of at most {MAX_RANK} sizes")
    if not all(_is_int(d) and 0 <= d < 2**63 for d in shape):
        raise _Invalid(f"{where} has shape {_short(shape)}, not a list of non-negative integers")
    return tuple(shape)


def _short(x: Any, limit: int = 80) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_exactly(f: BinaryIO, n: int, what: str) -> bytes:
    """Reads ``n`` bytes (already known to fit in the file) in bounded pieces."""
    pieces = []
    left = n
    while left:
        piece = f.read(min(left, 64 * 2**20))
        if not piece:
            raise _Invalid(f"the file ended early while reading {what} (it changed while read?)")
        pieces.append(piece)
        left -= len(piece)
    return b"".join(pieces)


class _Header(NamedTuple):
    """A validated header: tensors by name, the structure, the metadata, the data start;
    ``plain`` for a safetensors file without jaxnn's metadata (its structure is then
    its tensors, in file order)."""

    tensors: dict[str, dict[str, Any]]
    meta: dict[str, str]
    structure: list[dict[str, Any]]
    data_start: int
    plain: bool = False


def _is_plain(meta: Any) -> bool:
    """No jaxnn metadata at all: a safetensors file written by another tool."""
    if meta is None:
        return True
    return (
        isinstance(meta, dict)
        and meta.get("format") != FORMAT
        and not _JAXNN_FIELDS.intersection(meta)
    )


def _parse_header(f: BinaryIO) -> _Header:
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        raise _Invalid(f"it has {size} bytes, fewer than the 8 of the header length")
    (n,) = struct.unpack("<Q", _read_exactly(f, 8, "the header length"))
    if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
        raise _Invalid(
            f"it claims a header of {n} bytes, but the file has {size - 8} bytes after the "
            f"length and headers are limited to {MAX_HEADER_BYTES} bytes"
        )
    try:
        header = _loads(_read_exactly(f, n, "the header").decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise _Invalid(f"its header is not valid JSON ({_clip(str(e))})") from None
    if not isinstance(header, dict):
        raise _Invalid(f"its header is a JSON {_json_kind(header)}, not an object")

    meta = header.get("__metadata__")
    plain = _is_plain(meta)
    if plain:
        meta = {} if meta is None else meta
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Invalid("its header has no '__metadata__' object of strings")
    if not plain:  # a plain file has no jaxnn facts to check: its tensors are all
        _check_jaxnn_metadata(header, meta)
    try:
        tensors = _parse_tensors(header, size - 8 - n)
    except _Invalid as e:
        raise _Invalid(str(e), plain) from None
    if plain:
        structure = [
            {"path": name, "shape": t["shape"], "dtype": t["dtype"].name, "impl": None}
            for name, t in sorted(tensors.items(), key=lambda kv: kv[1]["offsets"])
        ]
        return _Header(tensors, meta, structure, 8 + n, plain=True)
    structure = _parse_structure(meta["structure"], tensors)
    return _Header(tensors, meta, structure, 8 + n)


def _check_jaxnn_metadata(header: dict[str, Any], meta: dict[str, str]) -> None:
    """The format, version and fields of jaxnn's metadata, and the header's checksum."""
    if meta.get("format") != FORMAT:
        raise _Invalid(
            f"its metadata does not say format {FORMAT!r} (it was not written by "
            "jaxnn.checkpoint.save)"
        )
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise _Invalid(
            f"it has format version {_short(meta.get('format_version'))}, and this jaxnn "
            f"reads version {FORMAT_VERSION}; read it with the jaxnn that wrote it"
        )
    for field in ("jaxnn_version", "structure", "checksum", "header_checksum", "user"):
        if field not in meta:
            raise _Invalid(f"its metadata lacks {field!r}")
    try:
        digest = _header_digest(header)
    except (RecursionError, ValueError):  # Parsed, yet too deep to serialise again.
        raise _Invalid("its header is nested too deeply") from None
    if meta["header_checksum"] != digest:
        raise _Invalid("its header checksum does not match the header (the header is damaged)")


def _parse_tensors(header: dict[str, Any], data_size: int) -> dict[str, dict[str, Any]]:
    """The tensors of a header, checked: dtypes, shapes, and offsets that tile the data."""
    tensors: dict[str, dict[str, Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"the tensor {_short(name)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _Invalid(f"{where} is not an object of dtype, shape and data_offsets")
        code = info["dtype"]
        if not isinstance(code, str) or code not in _CODES:
            raise _Invalid(
                f"{where} has dtype {_short(code)}, not one of {', '.join(sorted(_CODES))}"
            )
        shape = _check_shape(info["shape"], where)
        offsets = info["data_offsets"]
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            raise _Invalid(
                f"{where} has data_offsets {_short(offsets)}, not [begin, end] with "
                f"0 <= begin <= end <= {data_size} (the size of the data)"
            )
        nbytes = math.prod(shape) * _CODES[code].itemsize
        if nbytes != offsets[1] - offsets[0]:
            raise _Invalid(
                f"{where} has shape {list(shape)} of {code}, which takes {nbytes} bytes, "
                f"but its data_offsets span {offsets[1] - offsets[0]} bytes"
            )
        tensors[name] = {"dtype": _CODES[code], "shape": shape, "offsets": tuple(offsets)}

    position = 0
    for name, t in sorted(tensors.items(), key=lambda kv: kv[1]["offsets"]):
        begin, end = t["offsets"]
        if begin != position:
            problem = "overlaps the one before it" if begin < position else "leaves a gap"
            raise _Invalid(f"the tensor {_short(name)} {problem} in the data")
        position = end
    if position != data_size:
        raise _Invalid(
            f"its tensors cover {position} bytes of data, but the file holds {data_size}"
        )
    return tensors


def _parse_structure(text: str, tensors: dict[str, dict]) -> list[dict[str, Any]]:
    try:
        structure = _loads(text)
    except ValueError as e:
        raise _Invalid(f"its structure is not valid JSON ({_clip(str(e))})") from None
    if not isinstance(structure, list):
        raise _Invalid("its structure is not a list")
    seen = set()
    out = []
    for entry in structure:
        if not isinstance(entry, dict) or not {"path", "shape", "dtype"} <= set(entry):
            raise _Invalid(f"its structure has an entry {_short(entry)} without path/shape/dtype")
        name, dtype = entry["path"], entry["dtype"]
        if not isinstance(name, str) or name in seen or name not in tensors:
            raise _Invalid(f"its structure names {_short(name)}, which is not a unique tensor")
        seen.add(name)
        shape = _check_shape(entry["shape"], f"the structure entry {_short(name)}")
        tensor = tensors[name]
        if dtype == _KEY:
            impl = entry.get("impl")
            if not isinstance(impl, str):
                raise _Invalid(f"the key {_short(name)} has no implementation name")
            ok = (
                tensor["dtype"] == np.uint32
                and tensor["shape"][: len(shape)] == shape
                and len(tensor["shape"]) > len(shape)
            )
        else:
            impl = None
            ok = dtype == tensor["dtype"].name and shape == tensor["shape"]
        if not ok:
            raise _Invalid(f"its structure entry for {_short(name)} disagrees with the tensor")
        out.append({"path": name, "shape": shape, "dtype": dtype, "impl": impl})
    if len(seen) != len(tensors):
        extra = sorted(set(tensors) - seen)[0]
        raise _Invalid(f"it holds the tensor {_short(extra)}, which its structure does not list")
    return out


def _invalid(path: PathLike, reason: str, plain: bool = False) -> CheckpointError:
    if plain:
        return CheckpointError(
            f"checkpoint {os.fspath(path)!r} is a safetensors file without jaxnn's metadata "
            f"that cannot be read: {reason}. The file is damaged or truncated, or uses a "
            "dtype jaxnn does not read."
        )
    return CheckpointError(
        f"checkpoint {os.fspath(path)!r} is not a valid jaxnn checkpoint: {reason}. The "
        "file is damaged, truncated or not a checkpoint; restore from another checkpoint."
    )


def _open_header(path: PathLike, f: BinaryIO) -> _Header:
    try:
        return _parse_header(f)
    except _Invalid as e:
        raise _invalid(path, str(e), e.plain) from None


def read_metadata(path: PathLike) -> dict[str, Any]:
    """Reads a checkpoint's metadata without reading its arrays.

    The header is validated (and its own checksum verified); the data is not read,
    so a damaged data section is only found by :func:`restore`.

    Args:
        path: a file written by :func:`save`.

    Returns:
        A dict with ``format`` (``"jaxnn.checkpoint"``), ``format_version`` (int),
        ``jaxnn_version`` (str), ``step`` (int, or a list for a stacked population;
        present only if the saved tree had a ``step``), ``structure`` (a list of
        ``{"path", "shape", "dtype"}`` dicts in tree order, plus ``"impl"`` for PRNG
        keys), ``checksum`` (``"sha256:<hex>"`` of the data) and ``user`` (the
        ``metadata`` given to :func:`save`, ``{}`` if none).

    Raises:
        CheckpointError: if the file is not a valid jaxnn checkpoint.
        OSError: if the file cannot be opened (``FileNotFoundError``, ...).

    Example:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> save(path, {"w": jnp.zeros((2, 3), jnp.bfloat16)}, metadata={"lr": 0.1})
        >>> meta = read_metadata(path)
        >>> meta["structure"], meta["user"]
        ([{'path': 'w', 'shape': (2, 3), 'dtype': 'bfloat16'}], {'lr': 0.1})
    """
    with open(path, "rb") as f:
        header = _open_header(path, f)
    if header.plain:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} is a plain safetensors file (written by another "
            "tool, without jaxnn's metadata), so it has no jaxnn metadata to read. Read its "
            "arrays with nn.checkpoint.restore(path)."
        )
    meta = header.meta
    try:
        user = _loads(meta["user"])
        step = _loads(meta["step"]) if "step" in meta else None
    except ValueError as e:
        raise _invalid(path, f"its metadata is not valid JSON ({_clip(str(e))})") from None
    if not isinstance(user, dict):
        raise _invalid(path, "its user metadata is not a JSON object")
    structure = [
        {k: v for k, v in entry.items() if k != "impl" or v is not None}
        for entry in header.structure
    ]
    out: dict[str, Any] = {
        "format": meta["format"],
        "format_version": int(meta["format_version"]),
        "jaxnn_version": meta["jaxnn_version"],
        "structure": structure,
        "checksum": meta["checksum"],
        "user": user,
    }
    if step is not None:
        out["step"] = step
    return out


# --------------------------------------------------------------------------- restore


def _read_data(path: PathLike, f: BinaryIO, header: _Header) -> dict[str, np.ndarray]:
    """Reads every tensor, in file order, and verifies the data checksum."""
    digest = hashlib.sha256()
    arrays = {}
    try:
        for name, t in sorted(header.tensors.items(), key=lambda kv: kv[1]["offsets"]):
            begin, end = t["offsets"]
            f.seek(header.data_start + begin)
            raw = _read_exactly(f, end - begin, f"the tensor {name!r}")
            digest.update(raw)
            arrays[name] = np.frombuffer(raw, dtype=t["dtype"].newbyteorder("<")).reshape(
                t["shape"]
            )
    except _Invalid as e:
        raise _invalid(path, str(e), header.plain) from None
    if header.plain:
        return arrays  # another tool's file: no checksum to verify
    stored = header.meta["checksum"]
    if stored != "sha256:" + digest.hexdigest():
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} is corrupted: the SHA-256 checksum of its data "
            f"does not match the one recorded when it was saved ({_short(stored)}). The file "
            "was damaged after it was written; restore from another checkpoint."
        )
    return arrays


def _describe(dtype: str, impl: str | None) -> str:
    return f"key<{impl}>" if dtype == _KEY else dtype


def restore(path: PathLike, like: Any = None) -> Any:
    """Restores a checkpoint: as stored, or into the structure of ``like``.

    Every check runs before anything is returned: the header, the data's SHA-256
    checksum, then (with ``like``) the tree structure, shapes and dtypes against
    ``like``; a mismatch error names the first few differences by path and counts
    the rest.

    Without ``like``, the stored tree comes back as nested dicts keyed by the stored
    names: a saved ``TrainState`` gives ``{"params": {...}, "model_state": {...},
    "opt_state": {...}, "step": ..., "key": ...}`` (tuples and NamedTuples become
    dicts keyed ``"0"``, ``"1"``, ... or by field name; PRNG keys are typed keys again;
    a bare array gives ``{"value": array}``). A plain safetensors file (as PyTorch or
    Hugging Face write them) gives a flat dict ``{name: array}`` of its tensors, named
    as in the file. 64-bit arrays stay NumPy arrays unless ``jax_enable_x64`` is on
    (JAX would cast them to 32 bits).

    Args:
        path: a file written by :func:`save`, or any safetensors file.
        like: ``None`` to read the tree as stored; or a tree of the expected
            structure: the tree that was saved, a freshly initialised one, or the
            same with ``jax.ShapeDtypeStruct`` leaves (e.g. from ``jax.eval_shape``).
            Its leaves give the expected shapes and dtypes; a ``sharding`` on a leaf
            places the restored array accordingly. A plain safetensors file is
            matched to ``like`` by name (``"a/b"`` for ``like["a"]["b"]``).

    Returns:
        With ``like``: a tree with its structure (the same dicts, NamedTuples,
        ``None`` entries) whose leaves are JAX arrays holding the file's values, bit
        for bit, with the expected dtypes; PRNG key leaves are typed keys again.
        Without: the nested (or, for a plain file, flat) dict described above.

    Raises:
        CheckpointError: if the file is damaged, truncated or hostile, or if it does
            not match ``like`` (the message names the first mismatches by path and
            counts them); or if a 64-bit leaf is expected while ``jax_enable_x64``
            is off.
        TypeError: if ``like`` has a leaf that is not an array, spec or number.
        OSError: if the file cannot be opened (``FileNotFoundError``, ...).

    Example:
        >>> import os, tempfile
        >>> import jax, jax.numpy as jnp
        >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
        >>> save(path, {"kernel": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(7)})
        >>> stored = restore(path)  # no template: the tree as stored
        >>> stored["kernel"].shape, jax.random.key_data(stored["key"]).tolist()
        ((2, 3), [0, 7])
        >>> like = jax.eval_shape(lambda: {"kernel": jnp.zeros((2, 3)), "key": jax.random.key(0)})
        >>> restore(path, like)["kernel"].tolist()
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
        >>> restore(path, {"kernel": jnp.zeros((3, 3))})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        jaxnn.checkpoint.CheckpointError: checkpoint '...' does not match the expected tree: \
kernel: shape (2, 3) in the file, (3, 3) expected; key: in the file but not in the \
expected tree. Restore into a tree of the same model and optimizer, or call \
restore(path) without one to see what the file holds.
    """
    if like is None:
        return _restore_as_stored(path)
    what = f"restore({os.fspath(path)!r})"
    leaves_with_paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = _leaf_names([p for p, _ in leaves_with_paths])
    expected = []
    for name, (_, leaf) in zip(names, leaves_with_paths, strict=True):
        shape, dtype = _spec(leaf, name, what)
        if _is_key(dtype):
            expected.append((name, shape, _KEY, _key_impl(dtype), dtype, leaf))
        else:
            expected.append((name, shape, _dtype_name(dtype), None, np.dtype(dtype), leaf))

    wide = [
        f"{name} ({dtype})"
        for name, _, dtype, _, full_dtype, _ in expected
        if dtype != _KEY and jax.dtypes.canonicalize_dtype(full_dtype) != full_dtype
    ]
    if wide:
        raise CheckpointError(
            f"{what}: the expected tree has 64-bit leaves {', '.join(wide)}, which JAX "
            "holds only with jax_enable_x64 on. Enable it (jax.config.update("
            "'jax_enable_x64', True) or `with jax.enable_x64(True):`) or restore into a "
            "32-bit tree."
        )

    with open(path, "rb") as f:
        header = _open_header(path, f)
        arrays = _read_data(path, f, header)

    in_file = {entry["path"]: entry for entry in header.structure}
    problems = []
    for name, shape, dtype, impl, _, _ in expected:
        entry = in_file.get(name)
        if entry is None:
            problems.append(f"{name}: missing from the file")
            continue
        if entry["shape"] != shape:
            problems.append(f"{name}: shape {entry['shape']} in the file, {shape} expected")
        if (entry["dtype"], entry["impl"]) != (dtype, impl):
            problems.append(
                f"{name}: dtype {_describe(entry['dtype'], entry['impl'])} in the file, "
                f"{_describe(dtype, impl)} expected"
            )
    wanted = set(names)
    problems += [
        f"{entry['path']}: in the file but not in the expected tree"
        for entry in header.structure
        if entry["path"] not in wanted
    ]
    if problems:
        raise _mismatch(path, problems, [e["path"] for e in header.structure], names)

    leaves = []
    for name, _, dtype, _, full_dtype, leaf in expected:
        array = arrays[name]
        sharding = getattr(leaf, "sharding", None)
        if dtype == _KEY:
            out = jax.random.wrap_key_data(array, dtype=full_dtype)
        else:
            out = jnp.asarray(array)
        leaves.append(jax.device_put(out, sharding) if sharding is not None else out)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _some(items: list[str]) -> str:
    """``"a, b, c, ..."``: the first eight items, or ``"nothing"``."""
    return ", ".join(items[:8]) + (", ..." if len(items) > 8 else "") if items else "nothing"


def _tops(names: list[str]) -> list[str]:
    """The distinct first path components of ``names``, in order."""
    return list(dict.fromkeys(name.split("/", 1)[0] for name in names))


def _mismatch(
    path: PathLike, problems: list[str], in_file: list[str], expected: list[str]
) -> CheckpointError:
    """The error for a file that does not fit the expected tree: the first few problems,
    a count of the rest, and, when the list is cut, the two trees' top-level names if
    they differ (a TrainState restored into params, say)."""
    listed = "; ".join(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        listed = (
            f"{len(problems)} differences, the first {_MAX_LISTED}: {listed}; and "
            f"{len(problems) - _MAX_LISTED} more"
        )
    tops = ""
    file_tops, like_tops = _tops(in_file), _tops(expected)
    if len(problems) > _MAX_LISTED and set(file_tops) != set(like_tops):
        tops = (
            f" The file holds {_some(file_tops)} at its top; the expected tree, {_some(like_tops)}."
        )
    return CheckpointError(
        f"checkpoint {os.fspath(path)!r} does not match the expected tree: {listed}.{tops} "
        "Restore into a tree of the same model and optimizer, or call restore(path) "
        "without one to see what the file holds."
    )


def _restore_as_stored(path: PathLike) -> dict[str, Any]:
    """The file's tree as nested dicts by its stored names (flat for a plain file)."""
    with open(path, "rb") as f:
        header = _open_header(path, f)
        arrays = _read_data(path, f, header)
    leaves = {}
    for entry in header.structure:
        array = arrays[entry["path"]]
        if entry["dtype"] == _KEY:
            leaves[entry["path"]] = jax.random.wrap_key_data(array, impl=entry["impl"])
        elif jax.dtypes.canonicalize_dtype(array.dtype) != array.dtype:
            leaves[entry["path"]] = array.copy()  # 64 bits without x64: NumPy keeps them
        else:
            leaves[entry["path"]] = jnp.asarray(array)
    if header.plain:
        return leaves
    try:
        empty = _loads(header.meta.get("empty", "[]"))
    except ValueError as e:
        raise _invalid(path, f"its list of empty dicts is not JSON ({_clip(str(e))})") from None
    if not isinstance(empty, list) or not all(isinstance(e, str) and e for e in empty):
        raise _invalid(path, "its list of empty dicts is not a list of names")
    return _nest([*((name, {}) for name in empty), *leaves.items()], leaves)


def _nest(entries: list[tuple[str, Any]], flat: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts from ``"a/b/c"`` names; ``flat`` if two names cannot nest (a leaf
    ``a`` beside ``a/b``, which only dict keys holding ``/`` can make)."""
    root: dict[str, Any] = {}
    for name, value in entries:
        *parents, last = name.split("/")
        node = root
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                return flat
        if last in node and not (isinstance(value, dict) and isinstance(node[last], dict)):
            return flat
        node.setdefault(last, value)
    return root

"""Reading and writing Hugging Face safetensors checkpoints one tensor at a time.

``CheckpointReader`` maps tensor names to their shard (from ``model.safetensors.index.json``, or
by listing a single-file checkpoint) and reads each tensor on demand, so a caller never holds more
than the tensors it asked for. ``ShardWriter`` buffers output tensors up to a byte budget and
flushes a shard when the next tensor would overflow it: peak memory is one shard buffer.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# safetensors header dtype names -> torch dtypes (for planning without reading data)
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn,
              "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent; the message names the file."""


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not a text file ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object ({what}), got "
                              f"{type(data).__name__}")
    return data


class CheckpointReader:
    """Lazy name -> tensor mapping over a safetensors checkpoint directory (or one file).

    Every file problem is a ``CheckpointError`` (a ValueError) or an ``OSError`` whose message
    starts with the file's path: a missing directory, an index that is not JSON or has no
    ``weight_map``, a truncated or corrupt shard, an index that names the wrong shard for a tensor.
    """

    def __init__(self, path, device: str = "cpu"):
        path = Path(path)
        self.device = device
        self._handles = {}
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if path.is_file():
            self.dir, files = path.parent, [path.name]
            self.weight_map = None
        else:
            self.dir = path
            index = path / INDEX_NAME
            if index.is_file():
                data = _read_json(index, "a safetensors index")
                wm = data.get("weight_map")
                if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
                    raise CheckpointError(f"{index}: no 'weight_map' object mapping tensor names "
                                          "to shard files")
                self.weight_map = wm
                files = sorted(set(wm.values()))
            else:
                files = sorted(p.name for p in path.glob("*.safetensors"))
                self.weight_map = None
                if not files:
                    raise FileNotFoundError(f"{path}: no {INDEX_NAME} and no *.safetensors file "
                                            "(not a safetensors checkpoint directory)")
        self.files = files
        if self.weight_map is None:
            self.weight_map = {}
            for f in files:
                for name in self._handle(f).keys():
                    if name in self.weight_map:
                        raise CheckpointError(f"{self.dir / f}: tensor {name} is also in "
                                              f"{self.weight_map[name]}")
                    self.weight_map[name] = f
        else:
            missing = [f for f in files if not (self.dir / f).is_file()]
            if missing:
                raise FileNotFoundError(f"{self.dir / INDEX_NAME}: names shard(s) that are "
                                        f"missing: {missing[:5]}")
            held = {}
            for f in files:
                held[f] = set(self._handle(f).keys())
            wrong = [(n, f) for n, f in self.weight_map.items() if n not in held[f]]
            if wrong:
                n, f = wrong[0]
                raise CheckpointError(f"{self.dir / INDEX_NAME}: maps {n} to {f}, which does not "
                                      f"hold it ({len(wrong)} such tensor(s))")

    def _handle(self, file: str):
        if file not in self._handles:
            path = self.dir / file
            try:
                self._handles[file] = safe_open(str(path), framework="pt", device=self.device)
            except SafetensorError as exc:
                raise CheckpointError(f"{path}: not a readable safetensors file, truncated or "
                                      f"corrupt ({exc})") from None
        return self._handles[file]

    def _read(self, file: str, name: str) -> torch.Tensor:
        try:
            return self._handle(file).get_tensor(name)
        except SafetensorError as exc:
            raise CheckpointError(f"{self.dir / file}: cannot read tensor {name} ({exc})") from None

    def names(self) -> list[str]:
        """Tensor names, grouped by shard (reading shard by shard keeps page cache warm)."""
        order = {f: i for i, f in enumerate(self.files)}
        return sorted(self.weight_map, key=lambda n: (order[self.weight_map[n]], n))

    def __contains__(self, name) -> bool:
        return name in self.weight_map

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.weight_map:
            raise KeyError(name)
        return self._read(self.weight_map[name], name)

    def keys(self):
        return self.weight_map.keys()

    def info(self, name: str) -> tuple[tuple[int, ...], torch.dtype | str]:
        """(shape, dtype) from the shard header, without reading the data."""
        sl = self._handle(self.weight_map[name]).get_slice(name)
        dtype = sl.get_dtype()
        return tuple(sl.get_shape()), _ST_DTYPES.get(dtype, dtype)

    def nbytes(self, name: str) -> int:
        shape, dtype = self.info(name)
        size = torch.empty((), dtype=dtype).element_size() if isinstance(dtype, torch.dtype) else 1
        n = 1
        for d in shape:
            n *= d
        return n * size

    def metadata(self) -> dict:
        return self._handle(self.files[0]).metadata() or {}

    def close(self) -> None:
        self._handles.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "M": 10**6, "MB": 10**6, "G": 10**9,
          "GB": 10**9, "T": 10**12, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
          "TIB": 2**40, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_size(text) -> int:
    """'500MB', '2GB', '1GiB', '123' -> bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    unit = (m.group(2) or "").upper() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"size: expected e.g. '500MB', '2GB', '1GiB' or a byte count, got "
                         f"{text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


class ShardWriter:
    """Writes tensors into shards of at most `max_shard_size` bytes (a bigger tensor gets its own)
    and, at ``finish()``, names them like ``save_pretrained`` and writes the index."""

    def __init__(self, out_dir, max_shard_size: int, metadata: dict | None = None):
        self.out_dir = Path(out_dir)
        self.max_shard_size = max_shard_size
        self.metadata = {"format": "pt", **(metadata or {})}
        self._buffer: dict[str, torch.Tensor] = {}
        self._buffered = 0
        self._shards: list[tuple[str, list[str]]] = []  # (temporary file name, tensor names)
        self.total_size = 0
        self.peak_buffered = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self._buffer and self._buffered + nbytes > self.max_shard_size:
            self.flush()
        if name in self._buffer or any(name in names for _, names in self._shards):
            raise ValueError(f"{name}: written twice")
        self._buffer[name] = tensor.detach().cpu().contiguous()
        self._buffered += nbytes
        self.total_size += nbytes
        self.peak_buffered = max(self.peak_buffered, self._buffered)

    def flush(self) -> None:
        if not self._buffer:
            return
        tmp = f".shard-{len(self._shards):05d}.safetensors"
        path = self.out_dir / tmp
        try:
            save_file(self._buffer, str(path), metadata=self.metadata)
        except SafetensorError as exc:  # e.g. disk full: the Rust writer's I/O error
            raise OSError(f"{path}: cannot write shard ({exc})") from None
        self._shards.append((tmp, list(self._buffer)))
        self._buffer, self._buffered = {}, 0

    def finish(self) -> list[str]:
        """Flush, rename shards to their final names, write the index; returns shard names."""
        self.flush()
        count = len(self._shards)
        if count == 1:
            final = [SINGLE_NAME]
        else:
            final = [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        weight_map = {}
        for (tmp, names), name in zip(self._shards, final):
            os.replace(self.out_dir / tmp, self.out_dir / name)
            weight_map.update({n: name for n in names})
        if count > 1:
            index = {"metadata": {"total_size": self.total_size},
                     "weight_map": dict(sorted(weight_map.items()))}
            (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return final

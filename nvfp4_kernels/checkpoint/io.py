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
from safetensors import safe_open
from safetensors.torch import save_file

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# safetensors header dtype names -> torch dtypes (for planning without reading data)
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "F8_E4M3": torch.float8_e4m3fn,
              "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


class CheckpointReader:
    """Lazy name -> tensor mapping over a safetensors checkpoint directory (or one file)."""

    def __init__(self, path, device: str = "cpu"):
        path = Path(path)
        self.device = device
        if path.is_file():
            self.dir, files = path.parent, [path.name]
            self.weight_map = None
        else:
            self.dir = path
            index = path / INDEX_NAME
            if index.is_file():
                self.weight_map = json.loads(index.read_text())["weight_map"]
                files = sorted(set(self.weight_map.values()))
            else:
                files = sorted(p.name for p in path.glob("*.safetensors"))
                self.weight_map = None
                if not files:
                    raise FileNotFoundError(f"{path}: no {INDEX_NAME} and no *.safetensors file")
        self.files = files
        self._handles = {}
        if self.weight_map is None:
            self.weight_map = {}
            for f in files:
                for name in self._handle(f).keys():
                    if name in self.weight_map:
                        raise ValueError(f"{name}: present in both {self.weight_map[name]} and {f}")
                    self.weight_map[name] = f
        missing = [f for f in files if not (self.dir / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.dir}: shards named by {INDEX_NAME} are missing: "
                                    f"{missing[:5]}")

    def _handle(self, file: str):
        if file not in self._handles:
            self._handles[file] = safe_open(str(self.dir / file), framework="pt",
                                            device=self.device)
        return self._handles[file]

    def names(self) -> list[str]:
        """Tensor names, grouped by shard (reading shard by shard keeps page cache warm)."""
        order = {f: i for i, f in enumerate(self.files)}
        return sorted(self.weight_map, key=lambda n: (order[self.weight_map[n]], n))

    def __contains__(self, name) -> bool:
        return name in self.weight_map

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.weight_map:
            raise KeyError(name)
        return self._handle(self.weight_map[name]).get_tensor(name)

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
        save_file(self._buffer, str(self.out_dir / tmp), metadata=self.metadata)
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

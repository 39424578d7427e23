"""safetensors read/write for tools/torch.

Uses the `safetensors` package where it is installed (the GPU machine) and falls back to a
small writer/reader of the same format elsewhere (an 8-byte little-endian header length, a
JSON header with dtype/shape/data_offsets and __metadata__, then the raw little-endian data),
so the scripts also run on a CPU machine that has only torch and numpy.
"""

import json
import struct

import torch

try:  # the official implementation, when present
    from safetensors.torch import load_file as _st_load
    from safetensors.torch import save_file as _st_save
except ImportError:  # pragma: no cover - exercised only without safetensors
    _st_load = None
    _st_save = None

_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM = {v: k for k, v in _DTYPES.items()}


def save_file(tensors, path, metadata=None):
    """Writes a dict name -> tensor as one safetensors file (contiguous CPU copies)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    if _st_save is not None:
        _st_save(tensors, str(path), metadata=metadata or None)
        return
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):  # the official writer orders by dtype size then name; any order is valid
        t = tensors[name]
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": _DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_file(path):
    """Reads a safetensors file into a dict name -> CPU tensor."""
    if _st_load is not None:
        return _st_load(str(path))
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        dt = _FROM[info["dtype"]]
        buf = bytearray(data[base + a : base + b])
        t = torch.frombuffer(buf, dtype=torch.uint8) if b > a else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(dt).reshape(info["shape"]).clone()
    return out


def load_metadata(path):
    """The __metadata__ dict of a safetensors file ({} when absent)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header.get("__metadata__", {}) or {}

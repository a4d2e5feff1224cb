"""What an ONNX file written by this package says about itself, and where the ONNX file of a checkpoint lies.

`runtime.export.export_onnx` writes into the file's metadata the architecture and its kwargs, for a graph
that stops before DA-CSPN++'s propagation its `RefinementLayout`, and, exported from a checkpoint file, that
checkpoint's SHA-256 and metadata; `quantization.quantize_onnx` adds the precision "int8". They are read here
without the onnx package (`read_onnx_metadata` reads the model's metadata fields off the protobuf wire format
and skips the graph), so that a robot needs onnxruntime only.

An ONNX file "of a checkpoint" is one that records the checkpoint's SHA-256: beside the checkpoint as
`<stem>.onnx` (the whole graph) or `<stem>.fused.onnx` (the graph without the propagation) — the shipped
models are installed so, `dcros export` writes them — or in the cache of exports (`onnx_cache_path`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .. import __version__
from ..models.layout import RefinementLayout
from . import LOGGER_NAME

LOGGER = logging.getLogger(LOGGER_NAME)

INPUT_NAMES = ("rgb", "sparse_depth")
OUTPUT_NAME = "depth"
META_ARCHITECTURE = "depth_completion_ros.architecture"
META_KWARGS = "depth_completion_ros.kwargs"
# Present in a graph that stops before DA-CSPN++'s propagation (`refinement="fused"`): its RefinementLayout.
META_REFINEMENT = "depth_completion_ros.refinement_outside"
# Of a graph exported from a checkpoint file: the file's SHA-256 (hex) and its metadata (JSON).
META_CHECKPOINT_SHA256 = "depth_completion_ros.checkpoint_sha256"
META_CHECKPOINT_METADATA = "depth_completion_ros.checkpoint_metadata"
# "int8" in a graph `quantization.quantize_onnx` wrote.
META_PRECISION = "depth_completion_ros.precision"
# The file name of the ONNX files beside a checkpoint <stem>.pt, by refinement.
BESIDE_SUFFIXES = {"graph": ".onnx", "fused": ".fused.onnx"}
_MODEL_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {1: key, 2: value}


class ExportError(ValueError):
    """An exported ONNX graph does not reproduce the PyTorch model (e.g. a size frozen by tracing), or an earlier
    export of the same checkpoint failed."""


# --------------------------------------------------------------------------- metadata

def _varint(data, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _string_pair(entry: bytes) -> tuple[str, str]:
    """(key, value) of a serialized StringStringEntryProto."""
    fields, position = {}, 0
    while position < len(entry):
        tag, position = _varint(entry, position)
        if tag & 7 != 2:
            raise ValueError(f"metadata entry field {tag >> 3} has wire type {tag & 7}, not a string")
        length, position = _varint(entry, position)
        fields[tag >> 3] = entry[position:position + length].decode("utf-8")
        position += length
    return fields.get(1, ""), fields.get(2, "")


def read_onnx_metadata(onnx_path: str | Path) -> dict:
    """The metadata properties ({key: value}) of an ONNX file, read off the protobuf wire format of its
    ModelProto (field 14), skipping the graph: no onnx package, and no parse of the weights."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    meta = {}
    with open(onnx_path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        try:
            while stream.tell() < size:
                head = stream.read(20)  # a tag and a length are 10 bytes at most each
                tag, used = _varint(head, 0)
                wire = tag & 7
                if wire == 0:
                    _, used = _varint(head, used)
                    stream.seek(used - len(head), os.SEEK_CUR)
                elif wire in (1, 5):
                    stream.seek(used - len(head) + (8 if wire == 1 else 4), os.SEEK_CUR)
                elif wire == 2:
                    length, used = _varint(head, used)
                    stream.seek(used - len(head), os.SEEK_CUR)
                    if tag >> 3 == _MODEL_METADATA_PROPS:
                        key, value = _string_pair(stream.read(length))
                        meta[key] = value
                    else:
                        stream.seek(length, os.SEEK_CUR)
                else:
                    raise ValueError(f"wire type {wire} at byte {stream.tell()}")
        except (IndexError, ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{onnx_path}: not a readable ONNX model file ({error})") from None
    return meta


def read_onnx_architecture(onnx_path: str | Path) -> tuple[str | None, dict]:
    """(architecture name, kwargs) stored by `export_onnx` in an ONNX file; (None, {}) for other files."""
    return architecture_of(read_onnx_metadata(onnx_path))


def architecture_of(meta: dict) -> tuple[str | None, dict]:
    """(architecture name, kwargs) of an ONNX file's metadata."""
    kwargs = json.loads(meta[META_KWARGS]) if META_KWARGS in meta else {}
    return meta.get(META_ARCHITECTURE), kwargs


def checkpoint_metadata_of(meta: dict) -> dict:
    """The metadata of the checkpoint an ONNX file was exported from ({} where it does not record one)."""
    return json.loads(meta[META_CHECKPOINT_METADATA]) if META_CHECKPOINT_METADATA in meta else {}


def refinement_of(meta: dict) -> RefinementLayout | None:
    """The refinement layout of a graph exported with `refinement="fused"`, else None."""
    if META_REFINEMENT not in meta:
        return None
    return RefinementLayout.from_dict(json.loads(meta[META_REFINEMENT]))


def read_onnx_refinement(onnx_path: str | Path) -> RefinementLayout | None:
    """The refinement layout of a graph exported with `refinement="fused"`, else None."""
    return refinement_of(read_onnx_metadata(onnx_path))


def precision_backend(meta: dict) -> str:
    """"onnx-int8" for a graph `quantization.quantize_onnx` wrote, else "onnx" (for `spec.resolve_precision`)."""
    return "onnx-int8" if meta.get(META_PRECISION) == "int8" else "onnx"


# --------------------------------------------------------------------------- the files of a checkpoint

def file_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_code_digest(folder: str | Path | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the network code (`depth_completion_ros/models/*.py`, or `folder`'s):
    an exported graph depends on it as much as on the weights."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent.parent / "models"
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """The package's cache folder: `$DCROS_CACHE_DIR`, else `$XDG_CACHE_HOME/depth_completion_ros`, else
    `~/.cache/depth_completion_ros`."""
    return Path(os.environ.get("DCROS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "depth_completion_ros"))


def onnx_cache_path(checkpoint_path: str | Path, opset: int = 17, refinement: str = "graph",
                    sha256: str | None = None) -> Path:
    """Where the export of a checkpoint is cached (for `refinement` "fused", the graph without the propagation).

    Under `cache_root()`/onnx; the file name holds the checkpoint's SHA-256 (`sha256`, computed when not given),
    the opset, the package version and a digest of the network code, so a changed checkpoint, a new release or
    changed network code (an editable install) never reuses a stale graph.
    """
    checkpoint_path = Path(checkpoint_path)
    sha256 = sha256 or file_sha256(checkpoint_path)
    name = (f"{checkpoint_path.stem}-{sha256[:16]}-opset{opset}-v{__version__}"
            f"-code{model_code_digest()}{'-fused' if refinement == 'fused' else ''}.onnx")
    return cache_root() / "onnx" / name


def onnx_beside(checkpoint_path: str | Path, refinement: str = "graph") -> Path:
    """The name of a checkpoint's ONNX file beside it: <stem>.onnx, or <stem>.fused.onnx for the graph that
    stops before DA-CSPN++'s propagation."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.stem + BESIDE_SUFFIXES[refinement])


def onnx_files_beside(checkpoint_path: str | Path, sha256: str) -> dict[str, tuple[Path, dict]]:
    """{refinement: (path, metadata)} of the fp32 ONNX files beside a checkpoint that were exported from it (they
    record its SHA-256 `sha256`): what runs the checkpoint without PyTorch. int8 graphs do not count: they are not
    the checkpoint's depth."""
    found = {}
    for refinement in BESIDE_SUFFIXES:
        path = onnx_beside(checkpoint_path, refinement)
        if not path.is_file():
            continue
        try:
            meta = read_onnx_metadata(path)
        except ValueError as error:  # e.g. a Git LFS pointer where the file was not fetched
            LOGGER.warning("%s is not used: %s", path, error)
            continue
        if meta.get(META_CHECKPOINT_SHA256) == sha256 and precision_backend(meta) == "onnx" \
                and (refinement_of(meta) is not None) == (refinement == "fused"):
            found[refinement] = (path, meta)
    return found

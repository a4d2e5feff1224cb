"""The inference engine's parts, one way down; `inference.Engine` is the public face that puts them together.

    settings --resolve--> EngineSpec --onnx_runtime | torch_runtime--> a runtime that predicts

- `spec`: the plain description of an engine (`EngineSpec`: architecture, kwargs, metadata, backend, device,
  precision, refinement, threads, ONNX file, checkpoint, why this backend) and the choices that need no model
  (device, precision, threads, backend "auto"'s table, whether PyTorch is installed). No PyTorch.
- `onnx_files`: what an ONNX file of this package says about itself (its metadata, read without the onnx
  package), the cache of exports, and the ONNX files exported beside a checkpoint (the shipped models'). No
  PyTorch.
- `resolve`: settings -> EngineSpec, each choice made once, in order. Imports PyTorch only to read a checkpoint
  that no ONNX file describes, or to ask PyTorch about CUDA where a GPU driver is present.
- `onnx_runtime`: runs a spec of backend "onnx" with ONNX Runtime (+ numba for DA-CSPN++'s fused propagation,
  `models.dacspn_cpu`). No PyTorch.
- `torch_runtime`: runs a spec of backend "torch" with PyTorch (CUDA, fp16 autocast).
- `export`: a PyTorch model or checkpoint -> an ONNX file (PyTorch and onnx), and the cache of exports.

Every part logs under "depth_completion_ros.inference" (`LOGGER_NAME`), the engine's one log channel, so that a
logging setting for the engine reaches all of them.
"""
LOGGER_NAME = "depth_completion_ros.inference"

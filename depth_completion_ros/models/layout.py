"""What the inference runtimes need to know about the networks without PyTorch: the multiple a network
pads its input to, and the layout of DA-CSPN++'s refinement inputs (`RefinementLayout`), which a graph
exported with `refinement="fused"` returns and `dacspn_cpu` propagates. numpy-free and torch-free: the
ONNX Runtime engine (`runtime.onnx_runtime`) imports this module, the networks import it too, so that
both read the same numbers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEFAULT_EPS = 1e-6  # the affinities' normalisation floor (dacspn.normalize_affinities)
CDSPN_STRIDE_MULTIPLE = 16  # four stride-2 layers in the colour encoder (models/cdspn.py)
LSPKD_SIZE_MULTIPLE = 32  # stage1..stage4 and the last convolution each halve the resolution (models/lspkd.py)
# The multiple a network pads its input height and width to, by architecture name prefix; 32 for another.
SIZE_MULTIPLES = (("cdspn_", CDSPN_STRIDE_MULTIPLE), ("lspkd_", LSPKD_SIZE_MULTIPLE))
DEFAULT_SIZE_MULTIPLE = 32


def architecture_size_multiple(architecture: str) -> int:
    """The multiple a network pads its input height and width to (its total stride)."""
    for prefix, multiple in SIZE_MULTIPLES:
        if architecture.startswith(prefix):
            return multiple
    return DEFAULT_SIZE_MULTIPLE


@dataclass(frozen=True)
class RefinementLayout:
    """The shape of a DA-CSPN++ refinement, and the flat, named order of its inputs (coarse depth, sparse
    depth, then per stage the raw affinities and the kernel-size weights on the feature grid), for a graph
    that computes them and leaves the normalisation and propagation to `dacspn_cpu.refine`."""
    dilations: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    iterations: int
    eps: float = DEFAULT_EPS

    @classmethod
    def of(cls, module) -> "RefinementLayout":
        """The layout of a `dacspn.DACSPN` module."""
        return cls(tuple(module.dilations), tuple(module.kernel_sizes), int(module.iterations), float(module.eps))

    def to_dict(self) -> dict:
        return {"dilations": list(self.dilations), "kernel_sizes": list(self.kernel_sizes),
                "iterations": self.iterations, "eps": self.eps}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RefinementLayout":
        return cls(tuple(int(d) for d in values["dilations"]), tuple(int(k) for k in values["kernel_sizes"]),
                   int(values["iterations"]), float(values.get("eps", DEFAULT_EPS)))

    def names(self) -> list[str]:
        names = ["coarse_depth", "sparse_depth_padded"]
        for stage in range(len(self.dilations)):
            names += [f"stage{stage}_k{k}_affinity" for k in self.kernel_sizes]
            names.append(f"stage{stage}_kernel_weights")
        return names

    def flatten(self, coarse, sparse, guidance) -> tuple:
        """(coarse, sparse, `raw_guidance_on_features`'s list) -> one tuple in the order of `names`."""
        flat = [coarse, sparse]
        for affinities, weights in guidance:
            flat += [*affinities, weights]
        return tuple(flat)

    def unflatten(self, flat: Sequence) -> tuple:
        """The inverse of `flatten`: (coarse, sparse, guidance)."""
        if len(flat) != len(self.names()):
            raise ValueError(f"{len(flat)} refinement inputs for a layout of {len(self.names())} ({self})")
        items = iter(flat[2:])
        guidance = [([next(items) for _ in self.kernel_sizes], next(items)) for _ in self.dilations]
        return flat[0], flat[1], guidance

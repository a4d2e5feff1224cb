"""DA-CSPN++: dilated, accelerated convolutional spatial propagation (PENet's refinement module).

Propagation (CSPN, Cheng et al.; CSPN++ adds several kernel sizes mixed by a learned per-pixel
confidence; PENet dilates it and runs it coarse-to-fine). For a pixel i with neighbours N(i) of a
k x k kernel with dilation d, one iteration is

    D_i^{t+1} = A_ii * D_i^0 + sum_{j in N(i)} A_ij * D_j^t

with the affinities normalised from the raw guidance a (k*k - 1 values per pixel, predicted from
image/depth features):

    A_ij = a_ij / max(sum_{l in N(i)} |a_il|, eps)        A_ii = 1 - sum_{j in N(i)} A_ij

so sum_j |A_ij| <= 1 (the stability condition of CSPN) and the weights at i sum to one. After each
iteration valid sparse depth is re-injected, d = m * sparse + (1 - m) * d with m = 1[sparse > 0]
(computed as a select, so the kept values are bit-exact). Each neighbour term is one multiply-add of
the affinity plane with a shifted view of the padded depth — the same sum as convolving with the k*k
one-hot kernels of the accelerated CSPN or as `unfold`, without materialising k*k copies of the depth
map (about 9x faster on a CPU at 1216x352 for k = 7); pixels outside the image take the value of the
nearest border pixel (replicate padding), so borders are not pulled towards zero depth.

A refinement with dilations (2, 1) (PENet's choice) runs one stage per dilation, in order. Stage s
uses guidance predicted from the backbone features at 1/d_s resolution, nearest-up-sampled to the
depth grid, and propagates with dilation d_s; its first stage starts from (and is anchored to, as
D^0) the coarse backbone depth, each later stage starts from and is anchored to the previous stage.
Inside a stage each kernel size propagates on its own and the results are mixed by a softmax
confidence over the kernel sizes, predicted from the same features.

Zero guidance gives A_ij = 0 and A_ii = 1, so every iteration returns D^0: the module is then the
identity on pixels without sparse input.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import softmax_planes
from .layout import DEFAULT_EPS, RefinementLayout  # noqa: F401 - RefinementLayout is also read from here

SUPPORTED_DILATIONS = (1, 2, 4, 8)


def normalize_affinities(raw: torch.Tensor, eps: float = DEFAULT_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw guidance [B, k*k-1, H, W] -> (neighbour weights A_ij [B, k*k-1, H, W], centre A_ii [B, 1, H, W]).

    A_ij = a_ij / max(sum |a_il|, eps); A_ii = 1 - sum A_ij.
    """
    if raw.dim() != 4:
        raise ValueError(f"affinities must be [B, k*k-1, H, W], got shape {tuple(raw.shape)}")
    scale = raw.abs().sum(dim=1, keepdim=True).clamp_min(eps)
    neighbours = raw / scale
    centre = 1.0 - neighbours.sum(dim=1, keepdim=True)
    return neighbours, centre


def kernel_size_of(raw: torch.Tensor) -> int:
    """The odd kernel size k whose k*k - 1 neighbours the channels of `raw` hold."""
    channels = int(raw.shape[1])
    k = math.isqrt(channels + 1)
    if k * k - 1 != channels or k % 2 == 0 or k < 3:
        raise ValueError(f"affinities have {channels} channels; expected k*k - 1 for an odd k >= 3 (8, 24, 48, ...)")
    return k


def reinject_sparse(depth: torch.Tensor, sparse: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """d = m * sparse + (1 - m) * d for a binary mask m, as an exact select."""
    return torch.where(valid, sparse, depth)


def propagate(initial: torch.Tensor, anchor: torch.Tensor, raw_affinity: torch.Tensor, sparse: torch.Tensor,
              dilation: int = 1, iterations: int = 6, eps: float = DEFAULT_EPS,
              kernel_size: int | None = None) -> torch.Tensor:
    """Run `iterations` CSPN steps of one kernel size and dilation (no learned parts).

    initial: D at t = 0 [B,1,H,W]; anchor: D^0 of the centre term [B,1,H,W]; raw_affinity: guidance
    [B, k*k-1, H, W] on the same grid, one channel per kernel tap in row-major (ky, kx) order with the
    centre tap left out; sparse: metres, 0 = none [B,1,H,W]. `kernel_size` defaults to the one the
    affinity channels imply. Returns [B,1,H,W].
    """
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if not torch.jit.is_tracing():  # shape checks would be frozen into an exported graph
        for name, tensor in (("initial", initial), ("anchor", anchor), ("sparse", sparse)):
            if tensor.dim() != 4 or tensor.shape[1] != 1:
                raise ValueError(f"{name} must be [B, 1, H, W], got shape {tuple(tensor.shape)}")
        if raw_affinity.shape[0] != initial.shape[0] or raw_affinity.shape[-2:] != initial.shape[-2:]:
            raise ValueError(f"affinities {tuple(raw_affinity.shape)} do not match depth {tuple(initial.shape)}")
        inferred = kernel_size_of(raw_affinity)
        if kernel_size is not None and kernel_size != inferred:
            raise ValueError(f"kernel_size {kernel_size} does not match {raw_affinity.shape[1]} affinity channels")
        kernel_size = inferred
    elif kernel_size is None:
        kernel_size = kernel_size_of(raw_affinity)
    neighbour_weights, centre = normalize_affinities(raw_affinity, eps)
    return propagate_normalized(initial, anchor, neighbour_weights, centre, sparse, dilation, iterations, kernel_size)


def propagate_normalized(initial: torch.Tensor, anchor: torch.Tensor, neighbour_weights: torch.Tensor,
                         centre: torch.Tensor, sparse: torch.Tensor, dilation: int, iterations: int,
                         kernel_size: int) -> torch.Tensor:
    """`propagate` with the affinities already normalised (`normalize_affinities`): neighbour weights
    [B, k*k-1, H, W] and centre weight [B, 1, H, W]. Inputs are not checked again."""
    # One dense plane per tap (affinities may arrive channels-last), reused by every iteration.
    neighbour_weights = neighbour_weights.contiguous()
    anchor_term = centre * anchor
    valid = sparse > 0
    radius = (kernel_size // 2) * dilation
    taps = _tap_slices(kernel_size, dilation)
    depth = initial
    for _ in range(iterations):
        padded = F.pad(depth, (radius, radius, radius, radius), mode="replicate")
        if torch.is_grad_enabled() and (padded.requires_grad or neighbour_weights.requires_grad):
            neighbour_sum = _WeightedTapSum.apply(padded, neighbour_weights, taps)
        else:
            neighbour_sum = _weighted_tap_sum(padded, neighbour_weights, taps)
        depth = reinject_sparse(anchor_term + neighbour_sum, sparse, valid)
    return depth


def _weighted_tap_sum(padded: torch.Tensor, weights: torch.Tensor, taps) -> torch.Tensor:
    """sum_j weights[:, j] * (padded shifted by tap j): one multiply-add per tap on shifted views, the same
    sum as convolving with one-hot kernels or as `unfold`, without a k*k-channel copy of the depth map."""
    rows, cols = taps[0]
    total = weights[:, :1] * padded[:, :, rows, cols]
    for tap, (rows, cols) in enumerate(taps[1:], start=1):
        total = torch.addcmul(total, weights[:, tap:tap + 1], padded[:, :, rows, cols])
    return total


class _WeightedTapSum(torch.autograd.Function):
    """`_weighted_tap_sum` with a hand-written backward. Autograd through the tap loop would keep one
    partial sum per tap and allocate a zero-filled copy of the padded map for every slice's gradient
    (k*k of them per iteration); here the backward writes both gradients tap by tap into one buffer each.
    Inference and export take the plain function (no autograd), so the graph holds only standard ops."""

    @staticmethod
    def forward(ctx, padded, weights, taps):
        ctx.save_for_backward(padded, weights)
        ctx.taps = taps
        return _weighted_tap_sum(padded, weights, taps)

    @staticmethod
    def backward(ctx, grad_output):
        padded, weights = ctx.saved_tensors
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[0] else None
        grad_weights = torch.empty_like(weights) if ctx.needs_input_grad[1] else None
        for tap, (rows, cols) in enumerate(ctx.taps):
            if grad_weights is not None:
                torch.mul(grad_output, padded[:, :, rows, cols], out=grad_weights[:, tap:tap + 1])
            if grad_padded is not None:
                grad_padded[:, :, rows, cols].addcmul_(grad_output, weights[:, tap:tap + 1])
        return grad_padded, grad_weights, None


def _tap_slices(kernel_size: int, dilation: int) -> list[tuple[slice, slice]]:
    """For each neighbour tap (row-major, centre left out), the (rows, cols) slices of the padded map that
    align it with the output grid. Bounds are counted from both ends, so they hold for any image size
    (and stay size-independent in an exported graph)."""
    radius = (kernel_size // 2) * dilation
    centre = kernel_size // 2
    slices = []
    for ky in range(kernel_size):
        for kx in range(kernel_size):
            if ky == centre and kx == centre:
                continue
            dy, dx = (ky - centre) * dilation, (kx - centre) * dilation
            slices.append((slice(radius + dy, (dy - radius) or None), slice(radius + dx, (dx - radius) or None)))
    return slices


GUIDANCE_CONVOLUTIONS = ("dense", "separable")


class GuidanceHead(nn.Module):
    """Per-stage guidance: for each kernel size k a 3x3 conv + BatchNorm predicting the k*k - 1 raw
    affinities, and (with several kernel sizes) a 3x3 conv + BatchNorm predicting the logits of the
    per-pixel kernel-size confidence.

    convolution "dense" (PENet's): each head is a dense 3x3 conv. "separable": one depth-wise 3x3 conv
    shared by every head, then a point-wise conv per head, 1/7-1/8 of the multiply-adds for the same
    outputs (the guidance convolutions are most of DA-CSPN++'s FLOPs at full resolution). A trained dense
    head converts to it approximately, see `separable_from_dense`.
    """

    def __init__(self, in_channels: int, kernel_sizes: Sequence[int], convolution: str = "dense"):
        super().__init__()
        if convolution not in GUIDANCE_CONVOLUTIONS:
            raise ValueError(f"guidance convolution must be one of {GUIDANCE_CONVOLUTIONS}, got {convolution!r}")
        self.kernel_sizes = tuple(kernel_sizes)
        separable = convolution == "separable"
        self.depthwise = (nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
                          if separable else None)

        def head(out_channels: int) -> nn.Sequential:
            conv = (nn.Conv2d(in_channels, out_channels, 1, bias=False) if separable
                    else nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))
            return nn.Sequential(conv, nn.BatchNorm2d(out_channels))

        self.affinity = nn.ModuleDict({f"k{k}": head(k * k - 1) for k in self.kernel_sizes})
        self.confidence = head(len(self.kernel_sizes)) if len(self.kernel_sizes) > 1 else None

    def heads(self) -> list[nn.Sequential]:
        """The (conv, BatchNorm) heads in output order: one per kernel size, then the confidence if any."""
        return [*(self.affinity[f"k{k}"] for k in self.kernel_sizes),
                *([] if self.confidence is None else [self.confidence])]

    def merged_heads(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Every head's conv weight with its BatchNorm (running statistics) folded in, stacked: (weight, bias,
        output channels per head) of one convolution computing all heads."""
        weights, biases, sizes = [], [], []
        for conv, norm in self.heads():
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weights.append(conv.weight * scale.view(-1, 1, 1, 1))
            biases.append(norm.bias - norm.running_mean * scale)
            sizes.append(conv.out_channels)
        return torch.cat(weights), torch.cat(biases), sizes

    def forward(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """features [B, C, h, w] -> ([raw affinity [B, k*k-1, h, w] per kernel size], confidence logits or None).

        In eval mode the heads run as one convolution (`merged_heads`): the input is read once, and a
        runtime that pads output channels to its vector width pads once (ONNX Runtime, 83 outputs at full
        resolution, AVX-512: 163 against 195 ms for the four convolutions, the same values). Training keeps
        the separate heads, whose BatchNorms need the batch statistics."""
        if self.depthwise is not None:
            features = self.depthwise(features)
        if self.training:
            outputs = [head(features) for head in self.heads()]
        else:
            weight, bias, sizes = self.merged_heads()
            outputs = list(F.conv2d(features, weight, bias, padding=weight.shape[-1] // 2).split(sizes, dim=1))
        affinities = outputs[:len(self.kernel_sizes)]
        logits = None if self.confidence is None else outputs[-1]
        return affinities, logits


def separable_from_dense(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict:
    """A separable `GuidanceHead`'s weights (prefix = the head's, e.g. "refinement.stages.0.") from a
    dense one's: per input channel c, the dense kernels of every head, W[:, c] (outputs x 9 taps), are
    replaced by their best rank-1 product p_c d_c^T (SVD): d_c becomes the shared depth-wise kernel of
    channel c and p_c column c of the heads' point-wise weights. BatchNorms are kept. The result is an
    approximation to fine-tune from, not the same function."""
    convs = [key for key in state_dict if key.startswith(prefix) and key.endswith(".0.weight")
             and state_dict[key].dim() == 4 and state_dict[key].shape[-1] == 3]
    if not convs:
        return dict(state_dict)
    stacked = torch.cat([state_dict[key] for key in convs], 0).float()  # [outputs, C, 3, 3]
    outputs, channels = stacked.shape[:2]
    per_channel = stacked.permute(1, 0, 2, 3).reshape(channels, outputs, 9)
    u, s, vh = torch.linalg.svd(per_channel, full_matrices=False)
    pointwise = (u[:, :, 0] * s[:, :1]).t()  # [outputs, C]
    depthwise = vh[:, 0, :].reshape(channels, 1, 3, 3)
    adapted = {key: value for key, value in state_dict.items() if key not in convs}
    adapted[f"{prefix}depthwise.weight"] = depthwise
    start = 0
    for key in convs:
        count = state_dict[key].shape[0]
        adapted[key] = pointwise[start:start + count].reshape(count, channels, 1, 1).clone()
        start += count
    return adapted


class DACSPN(nn.Module):
    """DA-CSPN++ refinement: coarse depth + sparse depth + backbone features -> refined depth (metres).

    feature_channels: {scale: channels} of the guidance features; stage s (dilation d_s) reads the
    feature map of scale d_s (1/d_s of the depth grid). kernel_sizes: CSPN++ kernel sizes mixed per
    pixel (PENet: 3, 5, 7). dilations: one stage per entry, run in order (PENet: 2 then 1).
    iterations: propagation steps per stage and kernel size (PENet: 6). guidance: "dense" (PENet's 3x3
    guidance convolutions) or "separable" (see `GuidanceHead`).
    """

    def __init__(self, feature_channels: Mapping[int, int], kernel_sizes: Sequence[int] = (3, 5, 7),
                 dilations: Sequence[int] = (2, 1), iterations: int = 6, eps: float = DEFAULT_EPS,
                 guidance: str = "dense"):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        dilations = tuple(dilations)
        if not kernel_sizes or any(isinstance(k, bool) or not isinstance(k, int) or k < 3 or k % 2 == 0
                                   for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be odd integers >= 3, got {kernel_sizes!r}")
        if len(set(kernel_sizes)) != len(kernel_sizes):
            raise ValueError(f"kernel_sizes must not repeat, got {kernel_sizes!r}")
        if not dilations or any(d not in SUPPORTED_DILATIONS for d in dilations):
            raise ValueError(f"dilations must be a non-empty sequence of {SUPPORTED_DILATIONS}, got {dilations!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        missing = sorted(set(dilations) - set(feature_channels))
        if missing:
            raise ValueError(f"no guidance feature channels given for scale(s) {missing}; "
                             f"feature_channels has {sorted(feature_channels)}")
        self.kernel_sizes = kernel_sizes
        self.dilations = dilations
        self.iterations = iterations
        self.eps = eps
        self.guidance = guidance
        self.stages = nn.ModuleList(GuidanceHead(feature_channels[d], kernel_sizes, guidance) for d in dilations)

    def state_dict_from_kernel_sizes(self, state_dict: Mapping[str, torch.Tensor], kernel_sizes: Sequence[int],
                                     prefix: str = "") -> dict:
        """A state dict for this module from one trained with more kernel sizes (`kernel_sizes`, a superset
        of this module's): the affinity heads of the dropped sizes are left out, and the kernel-size
        confidence keeps the rows of the kept sizes, so its softmax is the trained mixture renormalised over
        them (with one size left there is no confidence). Keys outside `prefix` pass unchanged."""
        kernel_sizes = tuple(kernel_sizes)
        if kernel_sizes == self.kernel_sizes:
            return dict(state_dict)
        if not set(self.kernel_sizes) <= set(kernel_sizes):
            raise ValueError(f"kernel sizes {self.kernel_sizes} are not a subset of {kernel_sizes}")
        kept_rows = torch.tensor([kernel_sizes.index(k) for k in self.kernel_sizes])
        dropped = {f"k{k}" for k in kernel_sizes if k not in self.kernel_sizes}
        adapted = {}
        for key, value in state_dict.items():
            parts = key[len(prefix):].split(".") if key.startswith(prefix) else []
            # stages.<s>.affinity.k<k>.<layer>... / stages.<s>.confidence.<layer>.<tensor>
            if len(parts) > 3 and parts[0] == "stages" and parts[2] == "affinity" and parts[3] in dropped:
                continue
            if len(parts) > 2 and parts[0] == "stages" and parts[2] == "confidence":
                if len(self.kernel_sizes) == 1:
                    continue
                if value.dim() >= 1 and value.shape[0] == len(kernel_sizes):
                    value = value[kept_rows].clone()
            adapted[key] = value
        return adapted

    def raw_guidance_on_features(self, features: Mapping[int, torch.Tensor]
                                 ) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        """Per stage: ([raw affinities per kernel size], kernel-size weights summing to 1), on the stage's
        feature grid (1/d of the depth grid for dilation d)."""
        guidance = []
        for dilation, head in zip(self.dilations, self.stages):
            if dilation not in features:
                raise ValueError(f"guidance features for scale {dilation} are missing (have {sorted(features)})")
            affinities, logits = head(features[dilation])
            if logits is None:
                reference = affinities[0]
                weights = reference.new_ones((reference.shape[0], 1, *reference.shape[-2:]))
            else:
                weights = torch.cat(softmax_planes(list(logits.split(1, dim=1))), 1)
            guidance.append((affinities, weights))
        return guidance

    def predict_guidance(self, features: Mapping[int, torch.Tensor], size: tuple[int, int]
                         ) -> list[tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]]:
        """Per stage: ([(neighbour weights, centre weight) per kernel size], kernel-size weights), on the depth
        grid `size`. The affinities are normalised on the feature grid and then nearest-up-sampled: both
        normalisations are per pixel, so the values are those of normalising after the up-sampling, with
        1/d^2 of the work for a stage of dilation d."""
        return [([tuple(_resize_nearest(t, size) for t in normalize_affinities(raw, self.eps)) for raw in affinities],
                 _resize_nearest(weights, size))
                for affinities, weights in self.raw_guidance_on_features(features)]

    def refine(self, coarse: torch.Tensor, sparse: torch.Tensor,
               guidance: Sequence[tuple[Sequence[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]],
               return_stages: bool = False):
        """The propagation itself, given guidance as returned by `predict_guidance` (one entry per
        stage). Returns refined depth [B,1,H,W], and the list of stage outputs with `return_stages`."""
        if len(guidance) != len(self.dilations):  # lengths are Python ints, safe to check when tracing
            raise ValueError(f"guidance has {len(guidance)} stages, the module has {len(self.dilations)}")
        valid = sparse > 0
        previous = coarse
        stage_outputs = []
        for dilation, (affinities, weights) in zip(self.dilations, guidance):
            if len(affinities) != len(self.kernel_sizes):
                raise ValueError(f"{len(affinities)} affinity maps for {len(self.kernel_sizes)} kernel sizes")
            mixed = None
            for index, (kernel_size, (neighbours, centre)) in enumerate(zip(self.kernel_sizes, affinities)):
                result = propagate_normalized(previous, previous, neighbours, centre, sparse, dilation,
                                              self.iterations, kernel_size)
                term = weights[:, index:index + 1] * result
                mixed = term if mixed is None else mixed + term
            # The mixture re-weights equal values at sparse pixels; select them back bit-exactly.
            previous = reinject_sparse(mixed, sparse, valid)
            stage_outputs.append(previous)
        return (previous, stage_outputs) if return_stages else previous

    def forward(self, coarse: torch.Tensor, sparse: torch.Tensor, features: Mapping[int, torch.Tensor],
                return_stages: bool = False, raw_guidance: bool = False):
        """coarse [B,1,H,W] metres, sparse [B,1,H,W] metres (0 = none), features {scale: [B,C,H/s,W/s]}.
        `raw_guidance=True` returns `raw_guidance_on_features(features)` instead of refining."""
        if not torch.jit.is_tracing() and (coarse.shape != sparse.shape or coarse.dim() != 4 or coarse.shape[1] != 1):
            raise ValueError(f"coarse {tuple(coarse.shape)} and sparse {tuple(sparse.shape)} must both be [B,1,H,W]")
        if raw_guidance:
            return self.raw_guidance_on_features(features)
        guidance = self.predict_guidance(features, tuple(coarse.shape[-2:]))
        return self.refine(coarse, sparse, guidance, return_stages=return_stages)


def _resize_nearest(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if not torch.jit.is_tracing() and tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=size, mode="nearest")

"""CDSPN: compact two-branch depth-wise separable network with DA-CSPN++ refinement.

After T. Wang, "Compact Depth-wise Separable Precise Network for Depth Completion" (MSc thesis,
University of Alberta, 2023), Table 3.2, eq. 3.1, and PENet (Hu et al., ICRA 2021) for the refinement.

Backbone (Table 3.2, channels at width 32; every layer is a `SeparableConvBlock`, decoders up-sample
x2 bilinearly first; ',' = concatenation, '+' = addition):

    colour-dominant branch                       depth-dominant branch
    rgb_init  5,1   4/32   H     rgb, d          depth_init 5,1    2/32  H    d, rgb_d5[0]
    rgb_e1    3,2  32/32   H/2   rgb_init        depth_e1   3,2   32/32  H/2  depth_init
    rgb_e2    3,1  32/32   H/2   rgb_e1          depth_e2   3,1   32/32  H/2  depth_e1
    rgb_e2_2  3,1  32/32   H/2   rgb_e2          depth_e2_2 3,1   32/32  H/2  depth_e2
    rgb_e3    3,2  32/64   H/4   rgb_e2_2        depth_e3   3,2   64/64  H/4  rgb_d3 + rgb_e2_2, depth_e2_2
    rgb_e4    3,1  64/64   H/4   rgb_e3          depth_e4   3,1   64/64  H/4  depth_e3
    rgb_e4_2  3,1  64/64   H/4   rgb_e4          depth_e5   3,2 128/128  H/8  rgb_d2 + rgb_e4_2, depth_e4
    rgb_e5    3,2  64/128  H/8   rgb_e4_2        depth_e6   3,1 128/128  H/8  depth_e5
    rgb_e6    3,1 128/128  H/8   rgb_e5          depth_d1   3,1 256/64   H/4  rgb_d1 + rgb_e6, depth_e6
    rgb_e7    3,2 128/256  H/16  rgb_e6          depth_d2   3,1  64/32   H/2  depth_e4 + depth_d1
    rgb_e8    3,1 256/256  H/16  rgb_e7          depth_d3   3,1  32/32   H    depth_e2_2 + depth_d2
    rgb_d1    3,1 256/128  H/8   rgb_e8          depth_d4   3,1  32/2    H    depth_d3
    rgb_d2    3,1 128/64   H/4   rgb_d1 + rgb_e6
    rgb_d3    3,1  64/32   H/2   rgb_d2 + rgb_e4_2
    rgb_d4    3,1  32/32   H     rgb_d3 + rgb_e2_2
    rgb_d5    3,1  32/2    H     rgb_d4 + rgb_init

Each branch predicts a depth and a confidence; eq. 3.1 fuses them with a softmax over the two
confidences into the coarse depth, which DA-CSPN++ (`dacspn.DACSPN`) refines.

Choices where the thesis is silent or its table lost symbols (parameter counts stay at the thesis'
0.4 / 1.2 / 2.6 M for x32 / x64 / x96; measured 0.364 / 1.215 / 2.553 M):
- Merged table cells: rgb_e1, rgb_e2_2, depth_e1, depth_e2_2 are 32/32, rgb_e4_2 and depth_e4 64/64,
  as the neighbouring rows and the inputs of the next layers require.
- Width: one multiplier; every channel count of the table scales by width/32, except the fixed
  network inputs (4 = RGB + sparse depth, 2 = sparse depth + colour-branch depth) and the 2-channel
  prediction heads.
- Block: depth-wise conv -> point-wise conv -> BatchNorm -> ReLU (one normalisation per layer, no
  activation between the factorised convolutions); the thesis' "residual connections inside the
  layer" are identity skips in the stride-1 layers whose input and output channels agree (no
  parameters). The heads rgb_d5 and depth_d4 have no normalisation/activation and a point-wise bias.
- Depth heads: softplus on the depth channel (non-negative and never without gradient); depths are
  predicted in units of `depth_scale` metres (the sparse input is divided by it for conditioning).
- Refinement: PENet's DA-CSPN++ kept as the thesis keeps it ("untouched"): kernel sizes 3, 5, 7
  mixed per pixel, stages with dilation 2 then 1, 6 iterations each, dense 3x3 guidance convolutions.
  Its guidance features are, per scale, the colour decoder features and the depth-branch features
  that enter the next decoder layer: scale 1 = (rgb_d4 + rgb_init, depth_d3), scale 2 =
  (rgb_d3 + rgb_e2_2, depth_e2_2 + depth_d2), scale 4 = (rgb_d2 + rgb_e4_2, depth_e4 + depth_d1),
  scale 8 = (rgb_d1 + rgb_e6, depth_e6) — as PENet takes (rgb_feature0_plus, decoder_feature5) and
  (rgb_feature2_plus, decoder_feature4). Re-injection uses the binary validity mask, so valid sparse
  depth survives refinement exactly (PENet's learned soft mask would not guarantee that).
- Any input size: rgb and sparse are padded at the bottom/right to a multiple of 16 (four stride-2
  layers) — rgb by replicating the border, sparse with zeros (no invented measurements) — and the
  outputs are cropped back.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SeparableConvBlock, softmax_planes
from .dacspn import DACSPN, separable_from_dense
from .layout import CDSPN_STRIDE_MULTIPLE, RefinementLayout
from .prior import morphological_prior
from .registry import check_inputs, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BASE_WIDTH = 32
STRIDE_MULTIPLE = CDSPN_STRIDE_MULTIPLE  # four stride-2 layers in the colour encoder (models/layout.py)
DEFAULT_DEPTH_SCALE = 80.0  # metres; KITTI depths lie within it
PRIORS = ("morphological",)
DEFAULT_KERNEL_SIZES = (3, 5, 7)  # DA-CSPN++ as in PENet
# Initial logit of the prior in the eq. 3.1 softmax. The branches' confidence logits of a trained
# backbone lie around 0.5-1, so 3 starts the fusion at about 80 % prior, with gradient left to move it.
PRIOR_CONFIDENCE_INIT = 3.0
NO_PRIOR_LOGIT = -1.0e4  # where the prior has no value; finite so that fp16 and softmax stay defined

# (name, kernel, stride, in channels, out channels, decoder (up-sample first)) at width 32, Table 3.2 order.
# The in channels are the table's; the network derives its own from LAYER_INPUTS (a test checks they agree).
COLOR_LAYERS = (
    ("rgb_init", 5, 1, 4, 32, False),
    ("rgb_e1", 3, 2, 32, 32, False),
    ("rgb_e2", 3, 1, 32, 32, False),
    ("rgb_e2_2", 3, 1, 32, 32, False),
    ("rgb_e3", 3, 2, 32, 64, False),
    ("rgb_e4", 3, 1, 64, 64, False),
    ("rgb_e4_2", 3, 1, 64, 64, False),
    ("rgb_e5", 3, 2, 64, 128, False),
    ("rgb_e6", 3, 1, 128, 128, False),
    ("rgb_e7", 3, 2, 128, 256, False),
    ("rgb_e8", 3, 1, 256, 256, False),
    ("rgb_d1", 3, 1, 256, 128, True),
    ("rgb_d2", 3, 1, 128, 64, True),
    ("rgb_d3", 3, 1, 64, 32, True),
    ("rgb_d4", 3, 1, 32, 32, True),
    ("rgb_d5", 3, 1, 32, 2, False),
)
DEPTH_LAYERS = (
    ("depth_init", 5, 1, 2, 32, False),
    ("depth_e1", 3, 2, 32, 32, False),
    ("depth_e2", 3, 1, 32, 32, False),
    ("depth_e2_2", 3, 1, 32, 32, False),
    ("depth_e3", 3, 2, 64, 64, False),
    ("depth_e4", 3, 1, 64, 64, False),
    ("depth_e5", 3, 2, 128, 128, False),
    ("depth_e6", 3, 1, 128, 128, False),
    ("depth_d1", 3, 1, 256, 64, True),
    ("depth_d2", 3, 1, 64, 32, True),
    ("depth_d3", 3, 1, 32, 32, True),
    ("depth_d4", 3, 1, 32, 2, False),
)
FIXED_INPUT_LAYERS = {"rgb_init": 4, "depth_init": 2}  # RGB + sparse depth; sparse + colour-branch depth
OUTPUT_LAYERS = {"rgb_d5", "depth_d4"}
LAYER_NAMES = tuple(spec[0] for spec in COLOR_LAYERS + DEPTH_LAYERS)
# What each layer reads: the out channels of these layers, concatenated (forward() below). A layer that
# reads a sum (e.g. rgb_d2 reads rgb_d1 + rgb_e6) lists one term; the terms are tied by TIED_LAYERS.
LAYER_INPUTS = {
    "rgb_e1": ("rgb_init",), "rgb_e2": ("rgb_e1",), "rgb_e2_2": ("rgb_e2",), "rgb_e3": ("rgb_e2_2",),
    "rgb_e4": ("rgb_e3",), "rgb_e4_2": ("rgb_e4",), "rgb_e5": ("rgb_e4_2",), "rgb_e6": ("rgb_e5",),
    "rgb_e7": ("rgb_e6",), "rgb_e8": ("rgb_e7",), "rgb_d1": ("rgb_e8",), "rgb_d2": ("rgb_d1",),
    "rgb_d3": ("rgb_d2",), "rgb_d4": ("rgb_d3",), "rgb_d5": ("rgb_d4",),
    "depth_e1": ("depth_init",), "depth_e2": ("depth_e1",), "depth_e2_2": ("depth_e2",),
    "depth_e3": ("rgb_d3", "depth_e2_2"), "depth_e4": ("depth_e3",), "depth_e5": ("rgb_d2", "depth_e4"),
    "depth_e6": ("depth_e5",), "depth_d1": ("rgb_d1", "depth_e6"), "depth_d2": ("depth_d1",),
    "depth_d3": ("depth_d2",), "depth_d4": ("depth_d3",),
}
# Layers whose outputs are added together, so their channel counts must agree.
TIED_LAYERS = (("rgb_d1", "rgb_e6"), ("rgb_d2", "rgb_e4_2"), ("rgb_d3", "rgb_e2_2"), ("rgb_d4", "rgb_init"),
               ("depth_d1", "depth_e4"), ("depth_d2", "depth_e2_2"))
# DA-CSPN++ guidance per scale (see the module docstring): colour and depth features, concatenated.
GUIDANCE_INPUTS = {1: ("rgb_d4", "depth_d3"), 2: ("rgb_d3", "depth_d2"), 4: ("rgb_d2", "depth_d1"),
                   8: ("rgb_d1", "depth_e6")}


def scaled_channels(channels_at_32: int, width: int) -> int:
    """Channel count of a Table 3.2 layer at another width (x32 -> width)."""
    return max(1, int(round(channels_at_32 * width / BASE_WIDTH)))


def layer_channels(width: int = BASE_WIDTH, channels: dict | None = None) -> "OrderedDict[str, tuple[int, int]]":
    """{layer: (in channels, out channels)} at `width`, with `channels` ({layer: out channels}) overriding
    the width-scaled counts; the inputs follow from the wiring. Raises ValueError naming the layer for an
    unknown or fixed layer, a count below 1, or two added layers whose counts differ."""
    channels = dict(channels or {})
    for name, count in channels.items():
        if name not in LAYER_NAMES:
            raise ValueError(f"channels: unknown layer {name!r}; layers are {', '.join(LAYER_NAMES)}")
        if name in OUTPUT_LAYERS:
            raise ValueError(f"channels: {name} is a prediction head with 2 fixed outputs (depth, confidence)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"channels: {name} must be a positive integer, got {count!r}")
    out = {}
    for name, _, _, _, c_out, _ in COLOR_LAYERS + DEPTH_LAYERS:
        out[name] = c_out if name in OUTPUT_LAYERS else channels.get(name, scaled_channels(c_out, width))
    for first, second in TIED_LAYERS:
        if out[first] != out[second]:
            raise ValueError(f"channels: {first} ({out[first]}) and {second} ({out[second]}) are added together "
                             f"and need the same channel count")
    return OrderedDict((name, (FIXED_INPUT_LAYERS.get(name) or sum(out[s] for s in LAYER_INPUTS[name]), out[name]))
                       for name in LAYER_NAMES)


class CDSPN(nn.Module):
    """Two-branch depth-wise separable backbone (Table 3.2) + eq. 3.1 fusion + DA-CSPN++ refinement.

    width: the global multiplier, the channel count C of the first layers (32, 64, 96 in the thesis).
    iterations, dilations, kernel_sizes: of the DA-CSPN++ refinement (see `dacspn.DACSPN`).
    depth_scale: metres per network depth unit (sparse input is divided by it, depth heads multiplied).
    channels: {layer name: out channels} overriding single layers (e.g. the proposal of the random layer
        pruning test); layers added together (TIED_LAYERS) must agree, prediction heads stay at 2.
    prior: None (the thesis' network) or "morphological": a classical fill of the sparse input
        (`prior.morphological_prior`, computed inside the network) joins eq. 3.1's fusion as a third
        candidate depth, with a confidence predicted from the depth branch's last features
        (`prior_confidence`, a point-wise convolution). DA-CSPN++ anchors every propagation step to the
        fused coarse depth, so an anchor that already keeps the interpolation between returns is what
        the refinement then corrects (cf. DenseLiDAR, Gu et al., RA-L 2021, which refines a
        morphologically filled pseudo-depth).
    guidance: "dense" (PENet's DA-CSPN++, as in the thesis) or "separable" (depth-wise separable guidance
        convolutions, a cheaper refinement; see `dacspn.GuidanceHead`).
    """

    def __init__(self, width: int = 32, iterations: int = 6, dilations=(2, 1), kernel_sizes=DEFAULT_KERNEL_SIZES,
                 depth_scale: float = DEFAULT_DEPTH_SCALE, channels: dict | None = None,
                 prior: str | None = None, guidance: str = "dense"):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if not (isinstance(depth_scale, (int, float)) and depth_scale > 0):
            raise ValueError(f"depth_scale must be a positive number of metres, got {depth_scale!r}")
        if channels is not None and not isinstance(channels, dict):
            raise ValueError(f"channels must be a mapping of layer name to channel count, got {channels!r}")
        if prior is not None and prior not in PRIORS:
            raise ValueError(f"prior must be None or one of {', '.join(PRIORS)}, got {prior!r}")
        self.width = width
        self.depth_scale = float(depth_scale)
        self.prior = prior
        sizes = layer_channels(width, channels)
        for name, kernel, stride, _, _, decoder in COLOR_LAYERS + DEPTH_LAYERS:
            c_in, c_out = sizes[name]
            residual = stride == 1 and c_in == c_out and name not in OUTPUT_LAYERS
            setattr(self, name, SeparableConvBlock(c_in, c_out, kernel, stride, upsample=decoder,
                                                   residual=residual, output_layer=name in OUTPUT_LAYERS))
        unknown = sorted(set(dilations) - set(GUIDANCE_INPUTS)) if dilations else []
        if unknown:
            raise ValueError(f"dilations {unknown} have no backbone features; use values from "
                             f"{sorted(GUIDANCE_INPUTS)}")
        feature_channels = {scale: sum(sizes[layer][1] for layer in layers)
                            for scale, layers in GUIDANCE_INPUTS.items()}
        self.refinement = DACSPN(feature_channels, kernel_sizes=kernel_sizes, dilations=dilations,
                                 iterations=iterations, guidance=guidance)
        if prior is not None:
            self.prior_confidence = nn.Conv2d(sizes["depth_d3"][1], 1, kernel_size=1)
            nn.init.zeros_(self.prior_confidence.weight)
            nn.init.constant_(self.prior_confidence.bias, PRIOR_CONFIDENCE_INIT)
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def adapt_init_state_dict(self, state_dict: dict, kwargs: dict) -> dict:
        """Weights of a CDSPN built with `kwargs` made to fit this one, for a cheaper DA-CSPN++ that starts
        from a trained one: a subset of the trained kernel sizes (e.g. (3, 5) from PENet's (3, 5, 7)) keeps
        the kept sizes' affinity heads and confidence rows (exact); separable guidance from dense guidance
        takes each input channel's best rank-1 factorisation (`dacspn.separable_from_dense`, approximate).
        Anything else passes unchanged (and loading then names what does not fit)."""
        source_sizes = tuple(kwargs.get("kernel_sizes", DEFAULT_KERNEL_SIZES))
        if set(self.refinement.kernel_sizes) < set(source_sizes):
            state_dict = self.refinement.state_dict_from_kernel_sizes(state_dict, source_sizes, prefix="refinement.")
        if self.refinement.guidance == "separable" and kwargs.get("guidance", "dense") == "dense":
            for stage in range(len(self.refinement.stages)):
                state_dict = separable_from_dense(state_dict, prefix=f"refinement.stages.{stage}.")
        return state_dict

    # -- parameter groups -------------------------------------------------------------------------
    def prunable_layers(self) -> "OrderedDict[str, nn.Module]":
        """{thesis layer name: its point-wise conv}, in Table 3.2 order (colour branch, then depth).
        Masking output channels of that conv disables filters of the layer; note that its BatchNorm
        then still adds a per-channel constant, and the output heads (rgb_d5, depth_d4) carry a bias."""
        return OrderedDict((name, getattr(self, name).pointwise) for name in LAYER_NAMES)

    @staticmethod
    def tied_channel_groups() -> tuple[tuple[str, ...], ...]:
        """Layers whose outputs are added together and so must keep equal channel counts."""
        return TIED_LAYERS

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the two branches (first training stage)."""
        for name, parameter in self.named_parameters():
            if not name.startswith("refinement."):
                yield parameter

    def refinement_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of DA-CSPN++ (second stage, with the backbone frozen)."""
        return self.refinement.parameters()

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor, return_features: bool = False, refine: bool = True,
                refinement_inputs: bool = False):
        """rgb [B,3,H,W] in 0..1, sparse [B,1,H,W] metres (0 = none) -> dense depth [B,1,H,W] metres >= 0.

        `refine=False` returns the coarse backbone depth (skips DA-CSPN++, for backbone-only training).
        `refinement_inputs=True` stops before the propagation: (coarse depth, sparse depth, raw guidance) on
        the padded grid, as `RefinementInputs` exports them (through the modules' calls, so that an exported
        graph names its nodes as the whole network's do).
        `return_features=True` returns (depth, features): every Table 3.2 layer output by its name (on the
        grid padded to a multiple of 16, at the layer's resolution), the branch predictions
        "rgb_branch_depth", "rgb_branch_confidence", "depth_branch_depth", "depth_branch_confidence",
        the fusion weights "fusion_weights" [B,2,H,W] ([B,3,H,W] with a prior: colour, depth, prior),
        with a prior "prior_depth" and its logit "prior_confidence", "coarse_depth", and per refinement stage
        "refined_dilation<d>" (all [.., H, W], depths in metres).
        """
        check_inputs(rgb, sparse)
        height, width = rgb.shape[-2:]
        coarse, sparse, features, f, heads = self.backbone(rgb, sparse, guidance_features=refine or refinement_inputs,
                                                           head_outputs=return_features)
        if refinement_inputs:
            return coarse, sparse, self.refinement(coarse, sparse, features, raw_guidance=True)
        stages = []
        if refine:
            depth, stages = self.refinement(coarse, sparse, features, return_stages=True)
        else:
            depth = coarse
        depth = depth.clamp_min(0.0)[..., :height, :width]
        if not return_features:
            return depth
        for name, tensor in heads.items():
            f[name] = tensor[..., :height, :width]
        for dilation, stage in zip(self.refinement.dilations, stages):
            f[f"refined_dilation{dilation}"] = stage[..., :height, :width]
        return depth, f

    def backbone(self, rgb: torch.Tensor, sparse: torch.Tensor, guidance_features: bool = True,
                 head_outputs: bool = False):
        """The network before DA-CSPN++'s propagation, on the grid padded to a multiple of 16: (coarse depth
        [B,1,Hp,Wp] metres, sparse depth cleaned and padded [B,1,Hp,Wp], the refinement's guidance features
        {scale: tensor} (empty without `guidance_features`), the Table 3.2 layer outputs {name: tensor}, with
        `head_outputs` the branch and fusion outputs {name: tensor} that `forward(return_features=True)`
        crops and returns, else {}).
        Inputs are not checked again."""
        height, width = rgb.shape[-2:]
        # Invalid entries (negative, NaN) count as "no measurement".
        sparse = torch.where(sparse > 0, sparse, torch.zeros_like(sparse))
        pad_bottom = (-height) % STRIDE_MULTIPLE
        pad_right = (-width) % STRIDE_MULTIPLE
        image = (rgb - self.rgb_mean) / self.rgb_std
        # Padded unconditionally (a zero pad is a copy): a branch on the amount would be frozen by
        # tracing into whatever the example input needed, breaking exports with dynamic H and W.
        image = F.pad(image, (0, pad_right, 0, pad_bottom), mode="replicate")
        sparse = F.pad(sparse, (0, pad_right, 0, pad_bottom))
        d = sparse / self.depth_scale

        f: dict[str, torch.Tensor] = {}
        f["rgb_init"] = self.rgb_init(torch.cat([image, d], 1))
        f["rgb_e1"] = self.rgb_e1(f["rgb_init"])
        f["rgb_e2"] = self.rgb_e2(f["rgb_e1"])
        f["rgb_e2_2"] = self.rgb_e2_2(f["rgb_e2"])
        f["rgb_e3"] = self.rgb_e3(f["rgb_e2_2"])
        f["rgb_e4"] = self.rgb_e4(f["rgb_e3"])
        f["rgb_e4_2"] = self.rgb_e4_2(f["rgb_e4"])
        f["rgb_e5"] = self.rgb_e5(f["rgb_e4_2"])
        f["rgb_e6"] = self.rgb_e6(f["rgb_e5"])
        f["rgb_e7"] = self.rgb_e7(f["rgb_e6"])
        f["rgb_e8"] = self.rgb_e8(f["rgb_e7"])
        f["rgb_d1"] = self.rgb_d1(f["rgb_e8"])
        rgb_skip_8 = f["rgb_d1"] + f["rgb_e6"]
        f["rgb_d2"] = self.rgb_d2(rgb_skip_8)
        rgb_skip_4 = f["rgb_d2"] + f["rgb_e4_2"]
        f["rgb_d3"] = self.rgb_d3(rgb_skip_4)
        rgb_skip_2 = f["rgb_d3"] + f["rgb_e2_2"]
        f["rgb_d4"] = self.rgb_d4(rgb_skip_2)
        rgb_skip_1 = f["rgb_d4"] + f["rgb_init"]
        f["rgb_d5"] = self.rgb_d5(rgb_skip_1)
        rgb_depth = F.softplus(f["rgb_d5"][:, 0:1])
        rgb_confidence = f["rgb_d5"][:, 1:2]

        f["depth_init"] = self.depth_init(torch.cat([d, rgb_depth], 1))
        f["depth_e1"] = self.depth_e1(f["depth_init"])
        f["depth_e2"] = self.depth_e2(f["depth_e1"])
        f["depth_e2_2"] = self.depth_e2_2(f["depth_e2"])
        f["depth_e3"] = self.depth_e3(torch.cat([rgb_skip_2, f["depth_e2_2"]], 1))
        f["depth_e4"] = self.depth_e4(f["depth_e3"])
        f["depth_e5"] = self.depth_e5(torch.cat([rgb_skip_4, f["depth_e4"]], 1))
        f["depth_e6"] = self.depth_e6(f["depth_e5"])
        f["depth_d1"] = self.depth_d1(torch.cat([rgb_skip_8, f["depth_e6"]], 1))
        depth_skip_4 = f["depth_e4"] + f["depth_d1"]
        f["depth_d2"] = self.depth_d2(depth_skip_4)
        depth_skip_2 = f["depth_e2_2"] + f["depth_d2"]
        f["depth_d3"] = self.depth_d3(depth_skip_2)
        f["depth_d4"] = self.depth_d4(f["depth_d3"])
        depth_depth = F.softplus(f["depth_d4"][:, 0:1])
        depth_confidence = f["depth_d4"][:, 1:2]

        # Eq. 3.1: softmax over the two confidences weighs the two depths (and the prior, if any).
        if self.prior is None:
            fusion_weights = softmax_planes([rgb_confidence, depth_confidence])
            coarse = (fusion_weights[0] * rgb_depth + fusion_weights[1] * depth_depth) * self.depth_scale
        else:
            prior_depth = morphological_prior(sparse)
            prior_logit = self.prior_confidence(f["depth_d3"])
            prior_logit = torch.where(prior_depth > 0, prior_logit, torch.full_like(prior_logit, NO_PRIOR_LOGIT))
            fusion_weights = softmax_planes([rgb_confidence, depth_confidence, prior_logit])
            coarse = ((fusion_weights[0] * rgb_depth + fusion_weights[1] * depth_depth) * self.depth_scale
                      + fusion_weights[2] * prior_depth)

        features = {}
        if guidance_features:
            # Per scale: colour decoder features and depth-branch features entering the next layer.
            sources = {1: (rgb_skip_1, f["depth_d3"]), 2: (rgb_skip_2, depth_skip_2),
                       4: (rgb_skip_4, depth_skip_4), 8: (rgb_skip_8, f["depth_e6"])}
            features = {scale: torch.cat(sources[scale], 1) for scale in set(self.refinement.dilations)}
        if not head_outputs:
            return coarse, sparse, features, f, {}
        heads = {"rgb_branch_depth": rgb_depth * self.depth_scale, "rgb_branch_confidence": rgb_confidence,
                 "depth_branch_depth": depth_depth * self.depth_scale, "depth_branch_confidence": depth_confidence,
                 "fusion_weights": torch.cat(fusion_weights, 1)}
        if self.prior is not None:
            heads["prior_depth"] = prior_depth
            heads["prior_confidence"] = prior_logit
        heads["coarse_depth"] = coarse
        return coarse, sparse, features, f, heads


class RefinementInputs(nn.Module):
    """A CDSPN without DA-CSPN++'s propagation: (rgb, sparse) -> the flat tuple named by `self.layout.names()`
    (coarse and sparse depth on the padded grid, raw guidance on the feature grids), for a graph
    whose propagation runs in `dacspn_cpu.refine` (the inference engine's ONNX Runtime path on the CPU)."""

    def __init__(self, model: CDSPN):
        super().__init__()
        self.model = model
        self.layout = RefinementLayout.of(model.refinement)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor) -> tuple:
        return self.layout.flatten(*self.model(rgb, sparse, refinement_inputs=True))


def _build(width: int, kwargs: dict) -> CDSPN:
    kwargs = dict(kwargs)
    kwargs.setdefault("width", width)
    return CDSPN(**kwargs)


@register_model("cdspn_x32")
def cdspn_x32(**kwargs) -> CDSPN:
    """CDSPN, width x32 (about 0.4 M parameters); kwargs as CDSPN (width, iterations, dilations, ...)."""
    return _build(32, kwargs)


@register_model("cdspn_x64")
def cdspn_x64(**kwargs) -> CDSPN:
    """CDSPN, width x64 (about 1.2 M parameters); kwargs as CDSPN (width, iterations, dilations, ...)."""
    return _build(64, kwargs)


@register_model("cdspn_x96")
def cdspn_x96(**kwargs) -> CDSPN:
    """CDSPN, width x96 (about 2.6 M parameters); kwargs as CDSPN (width, iterations, dilations, ...)."""
    return _build(96, kwargs)

"""LSPKD teacher and students: dual-encoder (RGB, LiDAR) ResNet depth completion networks.

After Jeong et al., "Lightweight Depth Completion Network with Local Similarity-Preserving Knowledge
Distillation" (Sensors 2022), sec. 2.2: two encoders, each an input convolution, basic residual
blocks in four stages and a last convolution; their high-level features are concatenated and fed to
a decoder of 6 deconvolution layers; each decoder layer's output is concatenated with the RGB and
LiDAR encoder features of its resolution and fed to the next one. The teacher uses ResNet34 stages
(3, 4, 6, 3 blocks, 16 in all), the students ResNet18 stages (2, 2, 2, 2) with every channel count
multiplied by a width factor: 1/2 for the KITTI student, 1/8 for the NYU student.

Layers at width 1 (per encoder; s = stride; every convolution is followed by BatchNorm and ReLU,
except the depth head):

    stem     3x3 conv, s1     in (3 RGB | 1 LiDAR) -> 64     H        -> E0 (RGB, LiDAR concatenated)
    stage1   blocks[0] x BasicBlock, s2        64 -> 64      H/2      -> E1
    stage2   blocks[1] x BasicBlock, s2        64 -> 128     H/4      -> E2
    stage3   blocks[2] x BasicBlock, s2       128 -> 256     H/8      -> E3
    stage4   blocks[3] x BasicBlock, s2       256 -> 512     H/16     -> E4
    last     3x3 conv, s2                     512 -> 512     H/32     (bottleneck)

    decoder (3x3 transposed convolutions, s2, padding 1, output padding 1: exact x2 up-sampling)
    up0  cat(last_rgb, last_lidar)     1024 -> 256   H/16   -> D0, then cat with E4
    up1  D0 + E4 = 256 + 1024          1280 -> 128   H/8    -> D1, then cat with E3
    up2  D1 + E3 = 128 + 512            640 -> 64    H/4    -> D2, then cat with E2
    up3  D2 + E2 = 64 + 256             320 -> 64    H/2    -> D3, then cat with E1
    up4  D3 + E1 = 64 + 128             192 -> 64    H      -> D4, then cat with E0
    head D4 + E0 = 64 + 128             192 -> 1     H      3x3 transposed conv, s1, bias, softplus

Why these channels (the paper's Figure 1 with the per-layer sizes is lost from our copy): it is the
encoder/decoder of Ma et al.'s self-supervised sparse-to-dense network (the "Self S2D" the paper
compares with, "the same baseline architecture") with a second encoder and doubled skip
connections. Self S2D built this way counts 26.11 M parameters, exactly the paper's figure for it,
and the dual-encoder teacher counts 51.78 M (paper: 51.77 M; the 8 k difference is the 1x1
shortcut of stage1, which needs one here because stage1 down-samples).

Why these strides: the paper credits "the progressive downsampling of features" for the teacher
needing fewer operations than Self S2D, whose first stage runs at full resolution. Every stage
halving the resolution is the reading that fits its 349.36 GFLOPs (with a full-resolution stage1
the teacher would cost 1037 GFLOPs at 912x220).

Compute, in `flops.count_flops` terms (2 FLOPs per multiply-add, 912x220 padded to 928x224):
teacher 261.5 GFLOPs, KITTI student 35.1 GFLOPs. The paper's 349.36 and 59.22 are reproduced
(327.6 and 51.7, -6 % and -13 %) when a transposed convolution is charged at its *output*
resolution, as hook-based counters that treat it like a convolution do; the same rule brings Self
S2D (at 912x224, its multiple of 16) to 594 GFLOPs against the paper's 637.89 (exact counting:
521). The paper's figures are 2 FLOPs per multiply-add: counted as 1, Self S2D would be 260-300.
See `flops.count_flops`.

Parameters: the narrowed networks alone count 7.90 M (KITTI, width 1/2) and 0.50 M (NYU, width 1/8).
The paper's 8.56 M and 0.66 M (16.53 % and 1.30 % of the teacher) cannot both come from a uniformly
narrowed network (its count is a*w^2 + b*w with tiny b; the two figures need b = 1.34 M). They are
matched, to +0.5 % and +2.1 %, by the network plus its 1x1 dimension-matching convolutions (phi,
eq. 3) from the student's E0..E4 to the teacher's widths; their 6.8 GFLOPs also close the student's
FLOP gap (51.7 + 6.8 = 58.5 against 59.22). The paper lists the same count for the student with
and without distillation, so its student module carried them. The students here do too
(`adapter_width=1.0`: `self.adapters`, used by `adapt()` and by the distillation losses); they are
not run by `forward`, so inference and ONNX export do not pay for them.

Named features (`return_features=True`; sizes are for a W x H input, cropped to the part that
covers the image, ceil(H / 2^k) x ceil(W / 2^k) at level k):
    E0..E4  encoder features at 1/1, 1/2, 1/4, 1/8, 1/16: the RGB and the LiDAR encoder's outputs
            concatenated (RGB channels first), i.e. exactly what the decoder's skip connection takes.
    D0..D4  decoder layer outputs before their skip concatenation, in decoder order: D0 is the
            first (high-level, 1/16), D4 the last before the head (1/1). D_k is concatenated with
            E_(4-k).

Input conventions shared by the package's models: rgb [B,3,H,W] float RGB in 0..1, normalised here
with the ImageNet mean/std; sparse [B,1,H,W] metres, 0 = no return. The sparse input is divided by
`depth_scale` (80 m for KITTI, 10 m for the NYU student) so that it lies in about 0..1, and the
head predicts depth in the same unit: depth = depth_scale * softplus(head) — non-negative, and
never without gradient as a ReLU head can be. Any H x W works: the inputs are padded at the bottom
and right to a multiple of 32 (five stride-2 layers) — RGB by replicating the border, sparse depth
with zeros (no invented measurements) — and the outputs are cropped back.

`prior="morphological"` (this package's addition; the paper's networks regress every pixel): a classical
fill of the sparse input (`prior.morphological_prior`, IP-Basic's fill as tensor operations, inside the
graph) becomes the output's starting point, and a second head (`prior_correction`, a 3x3 transposed
convolution beside `head`) predicts a per-pixel log-ratio c that corrects it: depth = prior *
exp(clamp(c, -2, 2)) wherever the fill reaches, the head's own depth elsewhere. The fill is also an input:
a 3x3 convolution of it (`prior_input`) is added to the LiDAR encoder's stem convolution, before its
BatchNorm, so that the layers predicting the correction see what they correct. Both new layers start at
zero: an untrained network outputs the fill, and one started from a checkpoint without the prior keeps
that checkpoint's features (`model.new_layers: [prior_correction, prior_input]`). Why:
trained briefly on the synthetic world, the plain students stay worse than the fill they are meant to
beat (models/lspkd_student_synth.md); starting from the fill, training only has to learn where it is
wrong (depth edges, thin structures), the way CDSPN's `prior` anchors DA-CSPN++ to it. A ratio rather than
an additive correction in depth_scale units: the latter moved every depth by metres with the first
optimiser steps (80 m per unit of output) and the fine-tuned teacher fell far behind the fill it started
from; a ratio is scale-free, and the fill's errors grow with depth as a ratio's do. The encoders, the
decoder and the distillation features are unchanged, so the distillation losses apply as they are.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layout import LSPKD_SIZE_MULTIPLE
from .prior import morphological_prior
from .registry import check_inputs, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEACHER_BLOCKS = (3, 4, 6, 3)  # ResNet34 stages
STUDENT_BLOCKS = (2, 2, 2, 2)  # ResNet18 stages
STEM_CHANNELS = 64
STAGE_CHANNELS = (64, 128, 256, 512)
BOTTLENECK_CHANNELS = 512
DECODER_CHANNELS = (256, 128, 64, 64, 64)  # up0..up4 outputs (D0..D4) at width 1
SIZE_MULTIPLE = LSPKD_SIZE_MULTIPLE  # stage1..stage4 and the last convolution each halve the resolution
KITTI_DEPTH_SCALE = 80.0
NYU_DEPTH_SCALE = 10.0
ENCODER_FEATURES = ("E0", "E1", "E2", "E3", "E4")
DECODER_FEATURES = ("D0", "D1", "D2", "D3", "D4")
FEATURE_NAMES = ENCODER_FEATURES + DECODER_FEATURES
PRIORS = ("morphological",)
PRIOR_LOG_RATIO_LIMIT = 2.0  # the correction scales the fill by exp(-2)..exp(2), 0.14x..7.4x


def scaled_channels(channels: int, width: float) -> int:
    """Channel count of a width-1 layer narrowed (or widened) by `width`, at least 1."""
    return max(1, int(round(channels * width)))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _deconv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 transposed convolution, stride 2: output exactly twice the input size."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm and a residual connection (a 1x1
    convolution with BatchNorm on the shortcut where the stride or the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H/stride, W/stride]."""
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)), inplace=True)


class ResNetEncoder(nn.Module):
    """One branch: stem (3x3 conv, full resolution), four stages of basic blocks (each starting
    with a stride-2 block) and the last 3x3 stride-2 convolution."""

    def __init__(self, in_channels: int, blocks: Sequence[int], width: float):
        super().__init__()
        self.width = width
        self.stem_channels = scaled_channels(STEM_CHANNELS, width)
        self.stage_channels = tuple(scaled_channels(c, width) for c in STAGE_CHANNELS)
        self.out_channels = scaled_channels(BOTTLENECK_CHANNELS, width)
        self.stem = _conv_bn_relu(in_channels, self.stem_channels, stride=1)
        stages = []
        previous = self.stem_channels
        for count, channels in zip(blocks, self.stage_channels):
            layers = [BasicBlock(previous, channels, stride=2)]
            layers += [BasicBlock(channels, channels) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            previous = channels
        self.stages = nn.ModuleList(stages)
        self.last = _conv_bn_relu(previous, self.out_channels, stride=2)

    @property
    def skip_channels(self) -> tuple[int, ...]:
        """Channels of the five skip features (stem, stage1..stage4)."""
        return self.skip_channels_at(self.width)

    @staticmethod
    def skip_channels_at(width: float) -> tuple[int, ...]:
        """Skip feature channels of an encoder of this width, without building it."""
        return tuple(scaled_channels(c, width) for c in (STEM_CHANNELS,) + STAGE_CHANNELS)

    def forward(self, x: torch.Tensor, stem_extra: torch.Tensor | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x [B, C, H, W] (H, W multiples of 32) -> ([stem, stage1..stage4 features], bottleneck).
        stem_extra: added to the stem convolution's output before its BatchNorm (another input's features)."""
        if stem_extra is None:
            skips = [self.stem(x)]
        else:
            conv, norm, relu = self.stem
            skips = [relu(norm(conv(x) + stem_extra))]
        for stage in self.stages:
            skips.append(stage(skips[-1]))
        return skips, self.last(skips[-1])


class LSPKDNet(nn.Module):
    """Dual-encoder depth completion network of the LSPKD paper (teacher or student, see module doc).

    forward(rgb [B,3,H,W] in 0..1, sparse [B,1,H,W] metres, return_features=False)
        -> dense depth [B,1,H,W] metres, or (depth, {"E0".."E4", "D0".."D4": tensor}).
    """

    def __init__(self, blocks: Sequence[int] = TEACHER_BLOCKS, width: float = 1.0,
                 depth_scale: float = KITTI_DEPTH_SCALE, adapter_width: float | None = None,
                 prior: str | None = None):
        super().__init__()
        if prior is not None and prior not in PRIORS:
            raise ValueError(f"prior must be None or one of {', '.join(PRIORS)}, got {prior!r}")
        blocks = tuple(blocks)
        if len(blocks) != 4 or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks):
            raise ValueError(f"blocks must be 4 positive integers (blocks per stage), got {blocks!r}")
        if isinstance(width, bool) or not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive number, got {width!r}")
        if isinstance(depth_scale, bool) or not (isinstance(depth_scale, (int, float))
                                                 and math.isfinite(depth_scale) and depth_scale > 0):
            raise ValueError(f"depth_scale must be a positive number of metres, got {depth_scale!r}")
        self.blocks = blocks
        self.width = float(width)
        self.depth_scale = float(depth_scale)
        self.prior = prior
        self.rgb_encoder = ResNetEncoder(3, blocks, width)
        self.lidar_encoder = ResNetEncoder(1, blocks, width)

        # Skip features per level (fine -> coarse), both encoders concatenated.
        skip_channels = [2 * c for c in self.rgb_encoder.skip_channels]
        decoder_channels = [scaled_channels(c, width) for c in DECODER_CHANNELS]
        self._feature_channels = dict(zip(ENCODER_FEATURES, skip_channels))
        self._feature_channels.update(zip(DECODER_FEATURES, decoder_channels))

        layers = []
        previous = 2 * self.rgb_encoder.out_channels
        for level, channels in zip(range(4, -1, -1), decoder_channels):
            layers.append(_deconv_bn_relu(previous, channels))
            previous = channels + skip_channels[level]
        self.decoder = nn.ModuleList(layers)
        self.head = nn.ConvTranspose2d(previous, 1, 3, stride=1, padding=1)

        # phi of eq. 3: 1x1 convolutions from the encoder features to those of a network of `adapter_width`
        # (the teacher's), for feature distillation.
        self.adapters = nn.ModuleDict()
        if adapter_width is not None:
            teacher_skips = ResNetEncoder.skip_channels_at(adapter_width)
            for name, channels, target in zip(ENCODER_FEATURES, skip_channels, teacher_skips):
                self.adapters[name] = nn.Conv2d(channels, 2 * target, 1, bias=False)

        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()
        if prior is not None:
            # The log-ratio correcting the classical fill; zero at the start, so that an untrained network
            # (or one started from a checkpoint without this head) outputs the fill itself.
            self.prior_correction = nn.ConvTranspose2d(previous, 1, 3, stride=1, padding=1)
            nn.init.zeros_(self.prior_correction.weight)
            nn.init.zeros_(self.prior_correction.bias)
            # The fill as a second input of the LiDAR encoder's stem (zero at the start, like the correction):
            # what the correction corrects must be visible to the layers that predict it.
            self.prior_input = nn.Conv2d(1, self.lidar_encoder.stem_channels, 3, padding=1, bias=False)
            nn.init.zeros_(self.prior_input.weight)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def adapt(self, name: str, feature: torch.Tensor) -> torch.Tensor:
        """phi(feature): a named encoder feature mapped to the teacher's channel count."""
        if name not in self.adapters:
            raise ValueError(f"no adapter for feature {name!r} (adapters: {', '.join(self.adapters) or 'none'})")
        return self.adapters[name](feature)

    @property
    def feature_channels(self) -> dict[str, int]:
        """{feature name: channel count} of the named features, without a forward pass."""
        return dict(self._feature_channels)

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor, return_features: bool = False):
        """Dense depth [B,1,H,W] in metres (and the named features if `return_features`)."""
        check_inputs(rgb, sparse)
        height, width = rgb.shape[-2:]
        prior_depth = morphological_prior(sparse) if self.prior is not None else None
        pad_bottom = -height % SIZE_MULTIPLE
        pad_right = -width % SIZE_MULTIPLE
        rgb = (rgb - self.rgb_mean) / self.rgb_std
        sparse = sparse / self.depth_scale
        # Always pad (a zero pad is a copy): a conditional pad would be frozen into a traced/exported graph.
        rgb = F.pad(rgb, (0, pad_right, 0, pad_bottom), mode="replicate")
        sparse = F.pad(sparse, (0, pad_right, 0, pad_bottom), value=0.0)

        rgb_skips, rgb_bottleneck = self.rgb_encoder(rgb)
        stem_extra = None
        if prior_depth is not None:
            stem_extra = self.prior_input(F.pad(prior_depth / self.depth_scale, (0, pad_right, 0, pad_bottom)))
        lidar_skips, lidar_bottleneck = self.lidar_encoder(sparse, stem_extra)
        skips = [torch.cat(pair, dim=1) for pair in zip(rgb_skips, lidar_skips)]
        x = torch.cat([rgb_bottleneck, lidar_bottleneck], dim=1)
        decoded = []
        for level, layer in zip(range(4, -1, -1), self.decoder):
            x = layer(x)
            decoded.append(x)
            x = torch.cat([x, skips[level]], dim=1)
        depth = self.depth_scale * F.softplus(self.head(x))
        depth = depth[..., :height, :width]
        if prior_depth is not None:
            # Where the fill reaches, the network corrects it; elsewhere (far from every return) its own depth.
            log_ratio = self.prior_correction(x)[..., :height, :width]
            corrected = prior_depth * torch.exp(log_ratio.clamp(-PRIOR_LOG_RATIO_LIMIT, PRIOR_LOG_RATIO_LIMIT))
            depth = torch.where(prior_depth > 0, corrected, depth)
        if not return_features:
            return depth

        def crop(feature: torch.Tensor, level: int) -> torch.Tensor:
            # The part of a 1/2^level feature map that covers the un-padded image.
            scale = 2 ** level
            return feature[..., :math.ceil(height / scale), :math.ceil(width / scale)]

        features = {name: crop(f, level) for level, (name, f) in enumerate(zip(ENCODER_FEATURES, skips))}
        features.update((name, crop(f, 4 - k)) for k, (name, f) in enumerate(zip(DECODER_FEATURES, decoded)))
        return depth, features


@register_model("lspkd_teacher")
def lspkd_teacher(blocks: Sequence[int] = TEACHER_BLOCKS, width: float = 1.0,
                  depth_scale: float = KITTI_DEPTH_SCALE, prior: str | None = None) -> LSPKDNet:
    """LSPKD teacher: dual ResNet34 encoders (RGB, LiDAR), 6-layer deconvolution decoder (51.8 M)."""
    return LSPKDNet(blocks=blocks, width=width, depth_scale=depth_scale, prior=prior)


@register_model("lspkd_student")
def lspkd_student(blocks: Sequence[int] = STUDENT_BLOCKS, width: float = 0.5,
                  depth_scale: float = KITTI_DEPTH_SCALE, adapter_width: float | None = 1.0,
                  prior: str | None = None) -> LSPKDNet:
    """LSPKD KITTI student: dual ResNet18 encoders, all channels x1/2, with its adapters (8.6 M)."""
    return LSPKDNet(blocks=blocks, width=width, depth_scale=depth_scale, adapter_width=adapter_width, prior=prior)


@register_model("lspkd_student_nyu")
def lspkd_student_nyu(blocks: Sequence[int] = STUDENT_BLOCKS, width: float = 0.125,
                      depth_scale: float = NYU_DEPTH_SCALE, adapter_width: float | None = 1.0,
                      prior: str | None = None) -> LSPKDNet:
    """LSPKD NYU student: dual ResNet18 encoders, all channels x1/8, 10 m depth scale, adapters (0.67 M)."""
    return LSPKDNet(blocks=blocks, width=width, depth_scale=depth_scale, adapter_width=adapter_width, prior=prior)

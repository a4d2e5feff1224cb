"""Feature distillation over selectable teacher/student layer pairs with one or more methods.

Networks return their features by name, `model(rgb, sparse, return_features=True) -> (depth,
{name: tensor})`, encoder layers E0..E4 and decoder layers D0..D4. A `FeatureDistiller` pairs a
teacher layer with a student layer and applies the chosen methods (LSPKD, SPKD, ATT, PKT, SP) to
every pair, summing the weighted losses.

Default layers: E2 and D2. The LSPKD paper's layer study (sec. 3.4.1, Table 3) finds encoder-only
and high-level-only distillation weak and the mid-level layers of the encoder and the decoder best,
and adopts those mid-level layers for all its experiments; we take the middle of each five-layer
stack, E2 and D2, each paired with the same-named student layer.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import AttentionTransferLoss
from .lspkd import LSPKDLoss
from .pkt import PKTLoss
from .spkd import BatchSimilarityLoss, GlobalSimilarityLoss

DEFAULT_LAYERS: tuple[str, ...] = ("E2", "D2")
METHODS: tuple[str, ...] = ("lspkd", "spkd", "att", "pkt", "sp")


@dataclass(frozen=True)
class LayerPair:
    """One distilled pair: teacher layer name, student layer name and their channel counts."""

    teacher_layer: str
    student_layer: str
    teacher_channels: int
    student_channels: int

    def __post_init__(self):
        for name in ("teacher_layer", "student_layer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("teacher_channels", "student_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def label(self) -> str:
        """Short name used in loss-term keys, e.g. "E2-E2"."""
        return f"{self.teacher_layer}-{self.student_layer}"


def layer_pairs(
    teacher_channels: Mapping[str, int],
    student_channels: Mapping[str, int],
    layers: Sequence[str] = DEFAULT_LAYERS,
) -> list[LayerPair]:
    """Pairs of same-named layers, with channel counts looked up in the two {name: channels} maps."""
    pairs = []
    for layer in layers:
        for side, channels in (("teacher", teacher_channels), ("student", student_channels)):
            if layer not in channels:
                raise ValueError(f"{side} has no feature layer {layer!r}; it has {sorted(channels)}")
        pairs.append(LayerPair(layer, layer, int(teacher_channels[layer]), int(student_channels[layer])))
    return pairs


def probe_feature_channels(model: nn.Module, height: int = 64, width: int = 64) -> dict[str, int]:
    """{feature name: channels} of a model: its `feature_channels` mapping when it has one, otherwise
    from one forward pass on zero inputs of size H x W.

    The model must follow the models contract `model(rgb, sparse, return_features=True)`; its
    training mode is restored afterwards.
    """
    known = getattr(model, "feature_channels", None)
    if isinstance(known, Mapping):
        return {str(name): int(channels) for name, channels in known.items()}
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            rgb = torch.zeros(1, 3, height, width, device=device)
            sparse = torch.zeros(1, 1, height, width, device=device)
            output = model(rgb, sparse, return_features=True)
    finally:
        model.train(was_training)
    if not (isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], Mapping)):
        raise ValueError("model(rgb, sparse, return_features=True) must return (depth, {name: features})")
    return {name: int(tensor.shape[1]) for name, tensor in output[1].items()}


def student_adapters(student: nn.Module, pairs: Sequence[LayerPair]) -> dict[str, nn.Conv2d]:
    """{student layer: the student's own phi} for the pairs it fits.

    A student carrying 1x1 adapters in `student.adapters` (as the LSPKD students do) lends the one
    named after a pair's student layer when it maps that layer's channels to the pair's teacher
    channels; pass the result as `FeatureDistiller(..., adapters=...)`.
    """
    found: dict[str, nn.Conv2d] = {}
    owned = getattr(student, "adapters", None)
    if not isinstance(owned, (Mapping, nn.ModuleDict)):
        return found
    for pair in map(_as_pair, pairs):
        candidate = owned[pair.student_layer] if pair.student_layer in owned else None
        if (isinstance(candidate, nn.Conv2d) and candidate.kernel_size == (1, 1)
                and candidate.in_channels == pair.student_channels
                and candidate.out_channels == pair.teacher_channels):
            found[pair.student_layer] = candidate
    return found


def _as_pair(pair) -> LayerPair:
    if isinstance(pair, LayerPair):
        return pair
    if isinstance(pair, (tuple, list)) and len(pair) == 4:
        return LayerPair(*pair)
    raise ValueError(
        "a layer pair must be a LayerPair or (teacher_layer, student_layer, teacher_channels, "
        f"student_channels), got {pair!r}"
    )


class FeatureDistiller(nn.Module):
    """Sum of feature-distillation losses over layer pairs and methods.

        L_feat = sum over methods m, pairs p of  w_m * L_m(F_t[p.teacher], F_s[p.student])

    Methods: "lspkd" (`LSPKDLoss`, owns a 1x1 adapter per pair), "spkd" (`GlobalSimilarityLoss`,
    memory (H*W)^2), "att" (`AttentionTransferLoss`), "pkt" (`PKTLoss`), "sp" (`BatchSimilarityLoss`).
    `method` is one name or a list (e.g. ["lspkd", "att"]); `method_weights` maps names to w_m
    (default 1). The adapters LSPKD (and SPKD, for unequal channels) create are parameters of this
    module: optimise them with the student. `adapters` maps student layer names to external phi
    callables for LSPKD (e.g. the student's own 1x1 convolutions), which are not registered here.
    """

    def __init__(
        self,
        pairs: Sequence[LayerPair | tuple[str, str, int, int]],
        method: str | Sequence[str] = "lspkd",
        method_weights: Mapping[str, float] | None = None,
        lspkd_similarity_weight: float = 1.0,
        pkt_max_samples: int = 1024,
        adapters: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ):
        super().__init__()
        adapters = dict(adapters or {})
        self.pairs = [_as_pair(pair) for pair in pairs]
        if not self.pairs:
            raise ValueError("FeatureDistiller needs at least one layer pair")
        labels = [pair.label for pair in self.pairs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"duplicate layer pairs: {labels}")
        methods = [method] if isinstance(method, str) else list(method)
        if not methods:
            raise ValueError(f"method must name at least one of {METHODS}")
        for name in methods:
            if name not in METHODS:
                raise ValueError(f"unknown distillation method {name!r}; choose from {METHODS}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"method lists a method twice: {methods}")
        self.methods = methods
        weights = dict(method_weights or {})
        for name, value in weights.items():
            if name not in methods:
                raise ValueError(f"method_weights names {name!r}, which is not among the methods {methods}")
            if value < 0:
                raise ValueError(f"method weight for {name!r} must be >= 0, got {value}")
        self.method_weights = {name: float(weights.get(name, 1.0)) for name in methods}
        unknown = set(adapters) - {pair.student_layer for pair in self.pairs}
        if unknown:
            raise ValueError(f"adapters given for student layers {sorted(unknown)} that no pair uses")
        self.losses = nn.ModuleDict()
        for name in methods:
            for index, pair in enumerate(self.pairs):
                self.losses[f"{name}_{index}"] = self._build(
                    name, pair, lspkd_similarity_weight, pkt_max_samples, adapters.get(pair.student_layer))

    @classmethod
    def for_models(
        cls,
        teacher: nn.Module,
        student: nn.Module,
        layers: Sequence[str] = DEFAULT_LAYERS,
        method: str | Sequence[str] = "lspkd",
        probe_size: tuple[int, int] = (64, 64),
        use_student_adapters: bool = True,
        **kwargs,
    ) -> "FeatureDistiller":
        """Distiller for same-named `layers` of two models, channel counts found by `probe_feature_channels`.

        With `use_student_adapters`, a student that carries 1x1 adapters (`student.adapters[name]`,
        an `nn.Conv2d` to the teacher's channel count of that layer) lends them to LSPKD as phi;
        layers without a fitting adapter get one owned by the distiller.
        """
        pairs = layer_pairs(probe_feature_channels(teacher, *probe_size),
                            probe_feature_channels(student, *probe_size), layers)
        adapters = student_adapters(student, pairs) if use_student_adapters else None
        return cls(pairs, method=method, adapters=adapters or None, **kwargs)

    @staticmethod
    def _build(name: str, pair: LayerPair, similarity_weight: float, max_samples: int,
               adapter: Callable[[torch.Tensor], torch.Tensor] | None) -> nn.Module:
        if name == "lspkd":
            return LSPKDLoss(pair.teacher_channels, pair.student_channels, similarity_weight, adapter=adapter)
        if name == "spkd":
            return GlobalSimilarityLoss(pair.teacher_channels, pair.student_channels)
        if name == "att":
            return AttentionTransferLoss()
        if name == "pkt":
            return PKTLoss(max_samples=max_samples)
        return BatchSimilarityLoss()

    @staticmethod
    def _lookup(features: Mapping[str, torch.Tensor], layer: str, side: str) -> torch.Tensor:
        if layer not in features:
            raise ValueError(f"{side} features have no layer {layer!r}; they have {sorted(features)}")
        return features[layer]

    def forward(
        self, teacher_features: Mapping[str, torch.Tensor], student_features: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted sum, detached terms): keys "<method>/<pair>" and, for composite losses,
        "<method>/<pair>/<term>" (e.g. "lspkd/E2-E2/similarity")."""
        total = None
        terms: dict[str, torch.Tensor] = {}
        for name in self.methods:
            for index, pair in enumerate(self.pairs):
                teacher = self._lookup(teacher_features, pair.teacher_layer, "teacher")
                student = self._lookup(student_features, pair.student_layer, "student")
                loss_module = self.losses[f"{name}_{index}"]
                key = f"{name}/{pair.label}"
                if hasattr(loss_module, "forward_with_terms"):
                    value, parts = loss_module.forward_with_terms(teacher, student)
                    terms.update({f"{key}/{part}": part_value.detach() for part, part_value in parts.items()})
                else:
                    value = loss_module(teacher, student)
                terms[key] = value.detach()
                weighted = self.method_weights[name] * value
                total = weighted if total is None else total + weighted
        return total, terms

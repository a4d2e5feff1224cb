"""Distillation losses (LSPKD, SPKD, ATT, PKT, prediction and black-box distillation).

Every loss takes the teacher's tensors as targets and detaches them: gradients reach only the
student and the losses' own adapters (1x1 convolutions), which must be optimised with the student.
"""
from .attention import AttentionTransferLoss, attention_map
from .blackbox import (
    BlackBoxDistillationLoss,
    TeacherCache,
    TeacherCacheError,
    depth_gradients,
    gradient_mse,
)
from .feature_distiller import (
    DEFAULT_LAYERS,
    METHODS,
    FeatureDistiller,
    LayerPair,
    layer_pairs,
    probe_feature_channels,
    student_adapters,
)
from .lspkd import NEIGHBOUR_OFFSETS, LocalSimilarityLoss, LSPKDLoss, local_similarity, neighbour_mask
from .pkt import PKTLoss, pkt_probabilities
from .prediction import LSPKDObjective, PredictionDistillationLoss, masked_l1
from .spkd import (
    BatchSimilarityLoss,
    GlobalSimilarityLoss,
    batch_similarity,
    channel_similarity,
    spatial_similarity,
)

__all__ = [
    "AttentionTransferLoss", "attention_map",
    "BlackBoxDistillationLoss", "TeacherCache", "TeacherCacheError", "depth_gradients", "gradient_mse",
    "DEFAULT_LAYERS", "METHODS", "FeatureDistiller", "LayerPair", "layer_pairs", "probe_feature_channels",
    "student_adapters",
    "NEIGHBOUR_OFFSETS", "LocalSimilarityLoss", "LSPKDLoss", "local_similarity", "neighbour_mask",
    "PKTLoss", "pkt_probabilities",
    "LSPKDObjective", "PredictionDistillationLoss", "masked_l1",
    "BatchSimilarityLoss", "GlobalSimilarityLoss", "batch_similarity", "channel_similarity",
    "spatial_similarity",
]

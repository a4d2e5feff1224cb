"""The networks. Every model maps (rgb [B,3,H,W] in 0..1, un-normalised RGB; sparse depth [B,1,H,W] in
metres, 0 = no value) to dense depth [B,1,H,W] in metres, for any H and W; with `return_features=True`
it returns (depth, {feature name: tensor}). Models normalise RGB internally."""
from .registry import build_model, describe_model, list_models, register_model

# Importing the architecture modules registers their models.
from . import lspkd, cdspn  # noqa: E402,F401

__all__ = ["build_model", "describe_model", "list_models", "register_model"]

"""The networks. Every model maps (rgb [B,3,H,W] in 0..1, un-normalised RGB; sparse depth [B,1,H,W] in
metres, 0 = no value) to dense depth [B,1,H,W] in metres, for any H and W; with `return_features=True`
it returns (depth, {feature name: tensor}). Models normalise RGB internally.

Importing this package imports no PyTorch: `models.layout` and `models.dacspn_cpu` serve the ONNX Runtime
engine on a machine without it. The registry's functions below import it, and the architecture modules
that register the networks, on first use."""
_REGISTRY_FUNCTIONS = ("build_model", "describe_model", "list_models", "register_model")

__all__ = list(_REGISTRY_FUNCTIONS)


def __getattr__(name: str):
    if name in _REGISTRY_FUNCTIONS:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

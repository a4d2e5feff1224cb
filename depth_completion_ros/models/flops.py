"""Parameter and FLOP counts of the package's models (used by `dcros models` and the benchmarks).

FLOP convention: one multiply-add counts as **2 FLOPs**, the convention of
`torch.utils.flop_counter.FlopCounterMode`, which does the counting here. It counts the matrix
products and convolutions (including transposed and grouped ones); normalisation, activations,
interpolation and element-wise arithmetic are not counted. For a plain convolutional network that
is well under 1 % of its work; for spatial-propagation refinement built from element-wise products
(per pixel, kernel size squared multiply-adds per iteration) it leaves that part out.

Transposed convolutions are counted exactly: each input pixel meets the kernel once, so a
ConvTranspose2d costs 2 * C_in * C_out / groups * k_h * k_w * H_in * W_in FLOPs per image, a quarter
of what the same layer would cost if charged per output pixel at stride 2. Some published tables
(the LSPKD paper's among them, see `models.lspkd`) come from counters that treat a transposed
convolution like a convolution and charge it per *output* pixel; `transposed_at_output=True`
reproduces that rule so such tables can be compared like with like.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of `model` (shared parameters once); buffers are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_size(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def count_flops(model: nn.Module, height: int, width: int, *, batch_size: int = 1,
                transposed_at_output: bool = False) -> int:
    """FLOPs of one inference forward pass `model(rgb, sparse)` on a (batch_size,3,H,W) RGB and a
    (batch_size,1,H,W) sparse-depth input, 2 FLOPs per multiply-add, under torch.no_grad and in
    eval mode (the model's mode is restored).

    The pass runs on the meta device (shapes only, no arithmetic, no memory) when the model allows
    it, otherwise on the device of its parameters with zero inputs. Work the model does for
    internal padding is included: it is part of the real cost at that size.
    `transposed_at_output=True` charges transposed convolutions per output pixel (see module doc).
    """
    _check_size("height", height)
    _check_size("width", width)
    _check_size("batch_size", batch_size)
    extra = [0]

    def charge_at_output(module, inputs, output):
        # FlopCounterMode charged the input size; add the difference to the output size.
        in_pixels = math.prod(inputs[0].shape[2:])
        out_pixels = math.prod(output.shape[2:])
        per_pixel = 2 * module.in_channels * (module.out_channels // module.groups) * math.prod(module.kernel_size)
        extra[0] += output.shape[0] * per_pixel * (out_pixels - in_pixels)

    hooks = []
    if transposed_at_output:
        hooks = [m.register_forward_hook(charge_at_output) for m in model.modules() if isinstance(m, _TRANSPOSED)]
    was_training = model.training
    model.eval()
    try:
        try:
            total = _forward_flops(model, height, width, batch_size, torch.device("meta"))
        except (NotImplementedError, RuntimeError):
            # Data-dependent code or tensors kept outside parameters/buffers: run it for real.
            extra[0] = 0
            parameter = next(model.parameters(), None)
            device = parameter.device if parameter is not None else torch.device("cpu")
            total = _forward_flops(model, height, width, batch_size, device)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return int(total + extra[0])


def _forward_flops(model: nn.Module, height: int, width: int, batch_size: int, device: torch.device) -> int:
    rgb = torch.zeros(batch_size, 3, height, width, device=device)
    sparse = torch.zeros(batch_size, 1, height, width, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if device.type == "meta":
            # Same module, parameters and buffers swapped for meta tensors: no copy of the weights.
            state = {name: t.to("meta") for name, t in model.named_parameters(remove_duplicate=False)}
            state.update({name: t.to("meta") for name, t in model.named_buffers(remove_duplicate=False)})
            functional_call(model, state, (rgb, sparse), tie_weights=True, strict=False)
        else:
            model(rgb, sparse)
    return counter.get_total_flops()

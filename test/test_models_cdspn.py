"""CDSPN backbone, eq. 3.1 fusion and DA-CSPN++ refinement."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from depth_completion_ros.models import build_model, list_models
from depth_completion_ros.models.blocks import SeparableConvBlock
from depth_completion_ros.models.cdspn import CDSPN, COLOR_LAYERS, DEPTH_LAYERS
from depth_completion_ros.models.checkpoint import load_model, save_checkpoint
from depth_completion_ros.models.dacspn import DACSPN, normalize_affinities, propagate

# Table 3.2 of the CDSPN thesis, in order: colour-dominant branch, then depth-dominant branch.
THESIS_LAYERS = [
    "rgb_init", "rgb_e1", "rgb_e2", "rgb_e2_2", "rgb_e3", "rgb_e4", "rgb_e4_2", "rgb_e5", "rgb_e6",
    "rgb_e7", "rgb_e8", "rgb_d1", "rgb_d2", "rgb_d3", "rgb_d4", "rgb_d5",
    "depth_init", "depth_e1", "depth_e2", "depth_e2_2", "depth_e3", "depth_e4", "depth_e5", "depth_e6",
    "depth_d1", "depth_d2", "depth_d3", "depth_d4",
]


def make_inputs(batch=2, height=37, width=50, seed=0, density=0.1):
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(batch, 3, height, width, generator=generator)
    depth = 2.0 + 60.0 * torch.rand(batch, 1, height, width, generator=generator)
    keep = torch.rand(batch, 1, height, width, generator=generator) < density
    return rgb, torch.where(keep, depth, torch.zeros_like(depth))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, thesis_millions", [("cdspn_x32", 0.4), ("cdspn_x64", 1.2), ("cdspn_x96", 2.6)])
def test_parameter_count_matches_thesis(name, thesis_millions):
    assert name in list_models()
    count = count_parameters(build_model(name))
    assert abs(count / 1e6 - thesis_millions) <= 0.15 * thesis_millions, f"{name}: {count} parameters"


def test_width_multiplier_scales_every_hidden_layer():
    narrow, wide = CDSPN(width=32), CDSPN(width=64)
    for name in THESIS_LAYERS:
        a, b = narrow.prunable_layers()[name], wide.prunable_layers()[name]
        if name in ("rgb_d5", "depth_d4"):
            assert a.out_channels == b.out_channels == 2
        else:
            assert b.out_channels == 2 * a.out_channels, name
    assert narrow.rgb_e8.pointwise.out_channels == 256 and narrow.depth_d1.pointwise.in_channels == 256
    assert wide.rgb_init.depthwise.in_channels == 4 and wide.depth_init.depthwise.in_channels == 2


def test_wiring_gives_table_3_2_channels():
    """The in/out channels of every layer, derived from the wiring, are Table 3.2's at x32."""
    model = CDSPN(width=32)
    for name, _, _, c_in, c_out, _ in COLOR_LAYERS + DEPTH_LAYERS:
        block = getattr(model, name)
        assert (block.depthwise.in_channels, block.pointwise.out_channels) == (c_in, c_out), name


def test_channel_overrides_rewire_the_readers_and_train():
    channels = {"rgb_e7": 96, "rgb_e8": 80, "depth_e4": 24, "depth_d1": 24, "depth_e5": 40, "rgb_d2": 48,
                "rgb_e4_2": 48}
    model = build_model("cdspn_x32", channels=channels, iterations=1)
    assert model.rgb_e7.pointwise.out_channels == 96 and model.rgb_e8.depthwise.in_channels == 96
    assert model.rgb_d1.depthwise.in_channels == 80
    assert model.depth_e5.depthwise.in_channels == 48 + 24  # concatenation of rgb_d2 + rgb_e4_2 and depth_e4
    assert model.depth_e6.depthwise.in_channels == 40 and model.depth_d2.depthwise.in_channels == 24
    assert model.rgb_e5.depthwise.in_channels == 48
    assert count_parameters(model) < count_parameters(CDSPN(width=32, iterations=1))
    rgb, sparse = make_inputs(batch=1, height=33, width=47)
    depth = model(rgb, sparse)
    assert depth.shape == (1, 1, 33, 47)
    depth.mean().backward()
    assert model.rgb_e8.pointwise.weight.grad is not None


def test_channel_overrides_are_checked():
    with pytest.raises(ValueError, match="depth_d1 \\(64\\) and depth_e4 \\(16\\) are added together"):
        CDSPN(channels={"depth_e4": 16})
    with pytest.raises(ValueError, match="unknown layer 'rgb_e9'"):
        CDSPN(channels={"rgb_e9": 16})
    with pytest.raises(ValueError, match="rgb_d5 is a prediction head"):
        CDSPN(channels={"rgb_d5": 4})
    with pytest.raises(ValueError, match="rgb_e3 must be a positive integer"):
        CDSPN(channels={"rgb_e3": 0})
    with pytest.raises(ValueError, match="channels must be a mapping"):
        CDSPN(channels=[("rgb_e3", 8)])


def test_separable_block_parameter_count_by_hand():
    # depth-wise 8*3*3 + point-wise 8*16 + BatchNorm (weight, bias) 2*16
    assert count_parameters(SeparableConvBlock(8, 16, 3)) == 72 + 128 + 32
    # 5x5 depth-wise, stride 2: 4*25 + 4*32 + 2*32
    assert count_parameters(SeparableConvBlock(4, 32, 5, stride=2)) == 100 + 128 + 64
    # prediction head: no BatchNorm, point-wise bias
    assert count_parameters(SeparableConvBlock(32, 2, 3, output_layer=True)) == 288 + 64 + 2


def test_separable_block_shapes_and_bad_arguments():
    x = torch.rand(1, 8, 12, 16)
    assert SeparableConvBlock(8, 16, 3, stride=2)(x).shape == (1, 16, 6, 8)
    assert SeparableConvBlock(8, 4, 3, upsample=True)(x).shape == (1, 4, 24, 32)
    with pytest.raises(ValueError, match="odd"):
        SeparableConvBlock(8, 8, 4)
    with pytest.raises(ValueError, match="stride"):
        SeparableConvBlock(8, 8, 3, stride=3)
    with pytest.raises(ValueError, match="residual"):
        SeparableConvBlock(8, 16, 3, residual=True)


def test_prunable_layers_are_the_thesis_layers_in_order():
    model = CDSPN(width=32)
    layers = model.prunable_layers()
    assert list(layers) == THESIS_LAYERS
    for name, conv in layers.items():
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1), name
        assert conv is getattr(model, name).pointwise


def test_backbone_and_refinement_parameters_are_disjoint_and_complete():
    model = CDSPN(width=16)
    backbone = {id(p) for p in model.backbone_parameters()}
    refinement = {id(p) for p in model.refinement_parameters()}
    everything = {id(p) for p in model.parameters()}
    assert backbone and refinement
    assert not backbone & refinement
    assert backbone | refinement == everything


def test_forward_backward_odd_size():
    torch.manual_seed(0)
    model = build_model("cdspn_x32", iterations=2).train()
    rgb, sparse = make_inputs()
    depth, features = model(rgb, sparse, return_features=True)
    assert depth.shape == (2, 1, 37, 50)
    assert torch.isfinite(depth).all() and (depth >= 0).all()
    for name in THESIS_LAYERS + ["coarse_depth", "rgb_branch_depth", "depth_branch_depth",
                                 "rgb_branch_confidence", "depth_branch_confidence"]:
        assert name in features, name
    assert features["coarse_depth"].shape == (2, 1, 37, 50)
    # Eq. 3.1: the coarse depth is the softmax(confidence)-weighted mean of the branch depths.
    weights = torch.softmax(torch.cat([features["rgb_branch_confidence"], features["depth_branch_confidence"]], 1), 1)
    expected = weights[:, :1] * features["rgb_branch_depth"] + weights[:, 1:] * features["depth_branch_depth"]
    torch.testing.assert_close(features["coarse_depth"], expected)

    loss = (depth - 20.0).abs().mean()
    loss.backward()
    for name in ("rgb_init", "rgb_e8", "rgb_d5", "depth_init", "depth_e6", "depth_d4"):
        grad = getattr(model, name).pointwise.weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.refinement_parameters())


def test_model_keeps_valid_sparse_depth_exactly():
    torch.manual_seed(1)
    model = CDSPN(width=16, iterations=3).eval()
    rgb, sparse = make_inputs(seed=3)
    with torch.no_grad():
        depth = model(rgb, sparse)
        coarse = model(rgb, sparse, refine=False)
    valid = sparse > 0
    assert valid.sum() > 10
    assert torch.equal(depth[valid], sparse[valid])
    assert not torch.equal(coarse[valid], sparse[valid])  # the backbone alone does not reproduce them


def test_dacspn_keeps_valid_sparse_depth_exactly():
    torch.manual_seed(2)
    refiner = DACSPN({1: 6, 2: 5}, kernel_sizes=(3, 5, 7), dilations=(2, 1), iterations=4)
    _, sparse = make_inputs(batch=2, height=16, width=20, seed=4, density=0.2)
    coarse = 10.0 + 30.0 * torch.rand(2, 1, 16, 20)
    features = {1: torch.randn(2, 6, 16, 20), 2: torch.randn(2, 5, 8, 10)}
    refined, stages = refiner(coarse, sparse, features, return_stages=True)
    valid = sparse > 0
    assert len(stages) == 2
    for result in [refined] + stages:
        assert torch.equal(result[valid], sparse[valid])
    assert not torch.allclose(refined[~valid], coarse[~valid])  # random affinities do propagate


def test_each_iteration_reinjects_sparse_depth():
    """Each pixel copies its right neighbour (tap (0, +1), weight 1, centre weight 0); the right-most
    pixel holds a measurement. Re-injected after every step, the measurement travels one pixel per
    iteration; without it the coarse value would survive everywhere."""
    coarse = torch.full((1, 1, 1, 3), 10.0)
    sparse = torch.tensor([[[[0.0, 0.0, 4.0]]]])
    raw = torch.zeros(1, 8, 1, 3)
    raw[:, 4] = 1.0  # channels are the 3x3 taps in row-major order without the centre: 4 = (0, +1)
    steps = [propagate(coarse, coarse, raw, sparse, iterations=n).flatten().tolist() for n in (1, 2, 3)]
    assert steps == [[10.0, 10.0, 4.0], [10.0, 4.0, 4.0], [4.0, 4.0, 4.0]]


def test_dacspn_with_zero_affinities_is_identity():
    refiner = DACSPN({1: 6, 2: 5}, iterations=5)
    _, sparse = make_inputs(batch=1, height=16, width=20, seed=5, density=0.2)
    coarse = 10.0 + 30.0 * torch.rand(1, 1, 16, 20)
    zero = [([normalize_affinities(torch.zeros(1, k * k - 1, 16, 20)) for k in (3, 5, 7)],
             torch.softmax(torch.randn(1, 3, 16, 20), 1)) for _ in refiner.dilations]
    refined = refiner.refine(coarse, sparse, zero)
    valid = sparse > 0
    torch.testing.assert_close(refined[~valid], coarse[~valid], rtol=1e-6, atol=0)
    assert torch.equal(refined[valid], sparse[valid])


def test_model_with_zeroed_guidance_returns_coarse_depth_off_sparse_pixels():
    torch.manual_seed(3)
    model = CDSPN(width=16, iterations=3).eval()
    rgb, sparse = make_inputs(seed=6)
    with torch.no_grad():
        before, _ = model(rgb, sparse, return_features=True)
        for head in model.refinement.stages:
            for branch in head.affinity.values():
                branch[0].weight.zero_()
                branch[1].bias.zero_()
        after, features = model(rgb, sparse, return_features=True)
    valid = sparse > 0
    coarse = features["coarse_depth"]
    torch.testing.assert_close(after[~valid], coarse[~valid], rtol=1e-6, atol=0)
    assert not torch.allclose(before[~valid], coarse[~valid])  # with its own guidance it refines


@pytest.mark.parametrize("kept", [(3, 5), (5,)])
def test_fewer_kernel_sizes_take_the_trained_guidance_of_the_kept_ones(kept):
    """Adapted from a (3, 5, 7) network, a network with a subset of the kernel sizes predicts the same
    normalised affinities for the kept sizes, and kernel-size weights equal to the trained mixture
    renormalised over them (all 1 with one size)."""
    torch.manual_seed(11)
    full = CDSPN(width=8, iterations=2).eval()
    for module in full.modules():  # trained-looking batch statistics, so that the rows matter
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    lite = CDSPN(width=8, iterations=2, kernel_sizes=kept).eval()
    lite.load_state_dict(lite.adapt_init_state_dict(full.state_dict(), {"width": 8}))
    features = {1: torch.randn(1, full.refinement.stages[1].affinity["k3"][0].in_channels, 8, 12),
                2: torch.randn(1, full.refinement.stages[0].affinity["k3"][0].in_channels, 4, 6)}
    with torch.no_grad():
        full_guidance = full.refinement.predict_guidance(features, (8, 12))
        lite_guidance = lite.refinement.predict_guidance(features, (8, 12))
    indices = [(3, 5, 7).index(k) for k in kept]
    for (full_affinities, full_weights), (lite_affinities, lite_weights) in zip(full_guidance, lite_guidance):
        for index, (neighbours, centre) in zip(indices, lite_affinities):
            torch.testing.assert_close(neighbours, full_affinities[index][0])
            torch.testing.assert_close(centre, full_affinities[index][1])
        restricted = full_weights[:, indices]
        torch.testing.assert_close(lite_weights, restricted / restricted.sum(1, keepdim=True))
    same = lite.adapt_init_state_dict(lite.state_dict(), {"kernel_sizes": kept})
    assert same.keys() == lite.state_dict().keys()  # nothing to adapt from its own sizes
    with pytest.raises(ValueError, match="not a subset"):
        lite.refinement.state_dict_from_kernel_sizes(full.state_dict(), (3, 9), prefix="refinement.")


def test_separable_guidance_from_rank_one_dense_kernels_is_exact():
    """Dense guidance kernels that are, per input channel, one kernel times a per-output scale convert to
    separable guidance without error; general kernels convert to an approximation that keeps the weights'
    shapes, and the separable head has about 1/8 of the dense head's multiply-adds."""
    torch.manual_seed(12)
    dense = CDSPN(width=8, iterations=2, kernel_sizes=(3, 5)).eval()
    separable = CDSPN(width=8, iterations=2, kernel_sizes=(3, 5), guidance="separable").eval()
    state = dense.state_dict()
    for stage, head in enumerate(dense.refinement.stages):
        channels = head.affinity["k3"][0].in_channels
        taps = torch.randn(channels, 3, 3)
        prefix = f"refinement.stages.{stage}."
        for key in (prefix + "affinity.k3.0.weight", prefix + "affinity.k5.0.weight", prefix + "confidence.0.weight"):
            outputs = state[key].shape[0]
            state[key] = torch.randn(outputs, channels, 1, 1) * taps  # rank 1 per input channel
    dense.load_state_dict(state)
    separable.load_state_dict(separable.adapt_init_state_dict(dense.state_dict(), {"width": 8, "kernel_sizes": (3, 5)}))
    rgb, sparse = make_inputs(seed=13)
    with torch.no_grad():
        torch.testing.assert_close(separable(rgb, sparse), dense(rgb, sparse), rtol=1e-4, atol=1e-4)
    general = CDSPN(width=8, iterations=2, kernel_sizes=(3, 5)).state_dict()
    converted = separable.adapt_init_state_dict(general, {"width": 8, "kernel_sizes": (3, 5)})
    assert separable.load_state_dict(converted).missing_keys == []
    multiply_adds_per_pixel = [sum(m.weight.numel() for m in head.modules() if isinstance(m, nn.Conv2d))
                               for head in (dense.refinement.stages[1], separable.refinement.stages[1])]
    assert multiply_adds_per_pixel[1] * 5 < multiply_adds_per_pixel[0]
    with pytest.raises(ValueError, match="guidance convolution must be one of"):
        CDSPN(width=8, guidance="sparse")


def test_affinity_normalisation():
    raw = torch.randn(2, 8, 5, 6)
    neighbours, centre = normalize_affinities(raw)
    torch.testing.assert_close(neighbours.abs().sum(1), torch.ones(2, 5, 6))
    torch.testing.assert_close(centre[:, 0], 1.0 - neighbours.sum(1))
    zero_neighbours, zero_centre = normalize_affinities(torch.zeros(1, 24, 3, 3))
    assert torch.equal(zero_neighbours, torch.zeros_like(zero_neighbours))
    assert torch.equal(zero_centre, torch.ones_like(zero_centre))


@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), (3, 2), (5, 1)])
def test_one_propagation_step_matches_eq_2_5(kernel_size, dilation):
    """D_i = A_ii D0_i + sum_j A_ij D_j, neighbours clamped to the border, computed independently."""
    rng = np.random.default_rng(7)
    height, width = 6, 7
    depth = rng.uniform(1.0, 5.0, (height, width))
    anchor = rng.uniform(1.0, 5.0, (height, width))
    raw = rng.normal(size=(kernel_size * kernel_size - 1, height, width))
    weights = raw / np.abs(raw).sum(0, keepdims=True)
    centre = 1.0 - weights.sum(0)
    offsets = [(ky - kernel_size // 2, kx - kernel_size // 2) for ky in range(kernel_size) for kx in range(kernel_size)]
    offsets.remove((0, 0))
    rows, cols = np.mgrid[0:height, 0:width]
    expected = centre * anchor
    for channel, (dy, dx) in enumerate(offsets):
        neighbour = depth[np.clip(rows + dy * dilation, 0, height - 1), np.clip(cols + dx * dilation, 0, width - 1)]
        expected = expected + weights[channel] * neighbour

    def tensor(a):
        return torch.from_numpy(a).float().reshape(1, -1, height, width)

    result = propagate(tensor(depth), tensor(anchor), tensor(raw), torch.zeros(1, 1, height, width),
                       dilation=dilation, iterations=1)
    np.testing.assert_allclose(result[0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_refine_false_returns_the_coarse_depth():
    model = CDSPN(width=16).eval()
    rgb, sparse = make_inputs(batch=1, height=20, width=33)
    with torch.no_grad():
        coarse = model(rgb, sparse, refine=False)
        _, features = model(rgb, sparse, return_features=True)
    assert coarse.shape == (1, 1, 20, 33)
    torch.testing.assert_close(coarse, features["coarse_depth"])


def test_bad_inputs_are_rejected():
    model = CDSPN(width=8)
    rgb, sparse = make_inputs(batch=1, height=16, width=16)
    with pytest.raises(ValueError, match="rgb must be"):
        model(rgb[:, :2], sparse)
    with pytest.raises(ValueError, match="sparse depth must be"):
        model(rgb, sparse[:, 0])
    with pytest.raises(ValueError, match="differ"):
        model(rgb, sparse[..., :8])
    with pytest.raises(ValueError, match="width"):
        CDSPN(width=0)
    with pytest.raises(ValueError, match="dilations"):
        CDSPN(width=8, dilations=(3,))
    with pytest.raises(ValueError, match="iterations"):
        CDSPN(width=8, iterations=-1)


def test_checkpoint_round_trip(tmp_path):
    model = build_model("cdspn_x32", width=8, iterations=2).eval()
    rgb, sparse = make_inputs(batch=1, height=17, width=23)
    path = save_checkpoint(tmp_path / "cdspn.pt", model)
    loaded, checkpoint = load_model(path)
    loaded.eval()
    assert checkpoint.architecture == "cdspn_x32" and checkpoint.kwargs == {"width": 8, "iterations": 2}
    with torch.no_grad():
        assert torch.equal(model(rgb, sparse), loaded(rgb, sparse))
    # A network with per-layer channels rebuilds from its checkpoint alone.
    pruned = build_model("cdspn_x32", width=8, iterations=2, channels={"rgb_e7": 5, "rgb_e8": 7}).eval()
    loaded, checkpoint = load_model(save_checkpoint(tmp_path / "pruned.pt", pruned))
    assert checkpoint.kwargs["channels"] == {"rgb_e7": 5, "rgb_e8": 7}
    with torch.no_grad():
        assert torch.equal(pruned(rgb, sparse), loaded.eval()(rgb, sparse))


class DepthOnly(nn.Module):
    """Exports forward(rgb, sparse) alone, without the Python-only keyword flags."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rgb, sparse):
        return self.model(rgb, sparse)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Constant folding:UserWarning")
@pytest.mark.filterwarnings("error::torch.jit.TracerWarning")
@pytest.mark.parametrize("prior", [None, "morphological"])
def test_onnx_export_with_dynamic_size_matches_torch(tmp_path, prior):
    """Traced at a multiple of 16, the graph must still pad and crop correctly at other sizes (and compute
    the in-network prior, if any, as PyTorch does)."""
    ort = pytest.importorskip("onnxruntime")
    model = CDSPN(width=8, iterations=1, prior=prior).eval()
    path = tmp_path / "cdspn.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        torch.onnx.export(DepthOnly(model).eval(), make_inputs(batch=1, height=32, width=48), str(path), dynamo=False,
                          opset_version=17, input_names=["rgb", "sparse"], output_names=["depth"],
                          dynamic_axes={"rgb": axes, "sparse": axes, "depth": axes})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rgb, sparse = make_inputs(batch=2, height=37, width=50, seed=9)
    (onnx_depth,) = session.run(None, {"rgb": rgb.numpy(), "sparse": sparse.numpy()})
    with torch.no_grad():
        torch_depth = model.eval()(rgb, sparse).numpy()
    assert onnx_depth.shape == (2, 1, 37, 50)
    np.testing.assert_allclose(onnx_depth, torch_depth, rtol=1e-4, atol=1e-3)


def test_propagation_gradients_match_autograd_through_the_plain_sum():
    """The hand-written backward of the tap sum gives the gradients autograd computes through the loop."""
    from depth_completion_ros.models.dacspn import _WeightedTapSum, _tap_slices, _weighted_tap_sum

    generator = torch.Generator().manual_seed(3)
    taps = _tap_slices(5, 2)
    padded = torch.rand(2, 1, 7 + 8, 9 + 8, generator=generator, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(2, 24, 7, 9, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, w: _WeightedTapSum.apply(p, w, taps), (padded, weights))
    upstream = torch.rand(2, 1, 7, 9, generator=generator, dtype=torch.float64)
    custom = torch.autograd.grad((_WeightedTapSum.apply(padded, weights, taps) * upstream).sum(), (padded, weights))
    plain = torch.autograd.grad((_weighted_tap_sum(padded, weights, taps) * upstream).sum(), (padded, weights))
    for ours, reference in zip(custom, plain):
        torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("convolution", ["dense", "separable"])
def test_guidance_heads_run_as_one_convolution_in_eval_mode(convolution):
    """Eval mode computes every head with one convolution (BatchNorms folded in): the same outputs as the
    separate heads; training mode keeps the separate heads and their batch statistics."""
    from depth_completion_ros.models.dacspn import GuidanceHead

    torch.manual_seed(0)
    head = GuidanceHead(12, (3, 5, 7), convolution)
    for norm in (module for module in head.modules() if isinstance(module, torch.nn.BatchNorm2d)):
        norm.running_mean.normal_(0, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.data.normal_(1, 0.2)
        norm.bias.data.normal_(0, 0.2)
    features = torch.randn(2, 12, 9, 14)
    head.eval()
    with torch.no_grad():
        affinities, logits = head(features)
        shared = features if head.depthwise is None else head.depthwise(features)
        expected = [separate(shared) for separate in head.heads()]
    assert [a.shape[1] for a in affinities] == [8, 24, 48] and logits.shape[1] == 3
    for actual, reference in zip([*affinities, logits], expected):
        assert torch.allclose(actual, reference, atol=1e-5, rtol=1e-5)
    head.train()
    affinities, _ = head(features)
    assert affinities[0].grad_fn is not None and not torch.allclose(affinities[0].detach(), expected[0], atol=1e-3)

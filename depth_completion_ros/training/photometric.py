"""Photometric consistency between a frame and its neighbouring views: supervision where no LiDAR return is.

A predicted depth D places every pixel in 3-D; moved by the camera's motion to a neighbouring frame and
projected, it says where that pixel must appear in the neighbour's image. Sampling the neighbour there
reconstructs the frame, and the reconstruction error is small only where D is right (self-supervised depth
completion: Ma, Cavalheiro and Karaman, "Self-supervised sparse-to-dense", ICRA 2019). With several views the
per-pixel minimum of their errors is kept (a pixel hidden in one neighbour is usually seen in the other), and
pixels whose error is smaller before warping than after (objects moving with the camera, a vehicle at rest)
are left out (Godard et al., "Digging into self-supervised monocular depth estimation", ICCV 2019).

Items come from `KittiDepthCompletion(views=k)`: images in 0..1, K of the cut image, this camera -> view
camera transforms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WEIGHT = 0.85  # of the structural term against the L1 term, as Monodepth2 weighs them
MIN_DEPTH = 0.1  # m: a point nearer to the view's camera than this is not projected


def warp_view(depth: torch.Tensor, K: torch.Tensor, pose: torch.Tensor,
              view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The view's image sampled where each pixel of depth [B,1,H,W] lands in it: (image [B,3,H,W], inside
    [B,1,H,W] bool: in front of the view's camera and inside its image). K [B,3,3]; pose [B,4,4] this camera ->
    the view's camera."""
    batch, _, height, width = depth.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=depth.device, dtype=depth.dtype),
                            torch.arange(width, device=depth.device, dtype=depth.dtype), indexing="ij")
    pixels = torch.stack([xs, ys, torch.ones_like(xs)]).reshape(1, 3, -1)
    rays = torch.linalg.solve(K, pixels.expand(batch, -1, -1))
    points = rays * depth.reshape(batch, 1, -1)
    moved = pose[:, :3, :3] @ points + pose[:, :3, 3:]
    z = moved[:, 2:3]
    projected = K @ moved
    u = projected[:, 0:1] / z.clamp_min(MIN_DEPTH)
    v = projected[:, 1:2] / z.clamp_min(MIN_DEPTH)
    inside = (z > MIN_DEPTH) & (u >= 0) & (u <= width - 1) & (v >= 0) & (v <= height - 1)
    grid = torch.cat([2 * u / max(width - 1, 1) - 1, 2 * v / max(height - 1, 1) - 1], dim=1)
    grid = grid.reshape(batch, 2, height, width).permute(0, 2, 3, 1)
    sampled = F.grid_sample(view, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return sampled, inside.reshape(batch, 1, height, width)


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel and channel, over 3x3 windows (reflected at the border)."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x ** 2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y ** 2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def photometric_error(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W]: SSIM_WEIGHT * SSIM distance + (1 - SSIM_WEIGHT) * L1, averaged over the colour channels."""
    return (SSIM_WEIGHT * ssim_distance(image, reference).mean(1, keepdim=True)
            + (1 - SSIM_WEIGHT) * (image - reference).abs().mean(1, keepdim=True))


class PhotometricLoss(nn.Module):
    """The mean over the scored pixels of the per-pixel minimum reconstruction error over the views.

    forward(depth [B,1,H,W], rgb [B,3,H,W], K [B,3,3], views [B,V,3,H,W], poses [B,V,4,4], valid [B,V])
        -> (loss, share of the pixels scored)
    A pixel is scored where some valid view sees it and warping beats leaving the view as it is.
    """

    def forward(self, depth, rgb, K, views, poses, valid):
        best, best_unwarped = self.error_maps(depth, rgb, K, views, poses, valid)
        scored = torch.isfinite(best) & (best < best_unwarped)
        share = scored.to(depth.dtype).mean().detach()
        if not bool(scored.any()):
            return depth.sum() * 0.0, share
        return best[scored].mean(), share

    @staticmethod
    def error_maps(depth, rgb, K, views, poses, valid) -> tuple[torch.Tensor, torch.Tensor]:
        """Per pixel [B,1,H,W], over the valid views: the least reconstruction error with `depth` (inf where no
        view sees the pixel), and the least error of the views left unwarped (inf without a valid view)."""
        if views.shape[0] != depth.shape[0] or views.shape[-2:] != depth.shape[-2:]:
            raise ValueError(f"views {tuple(views.shape)} do not match the depth {tuple(depth.shape)}")
        unseen = torch.full_like(depth, float("inf"))
        best, best_unwarped = unseen, unseen
        for index in range(views.shape[1]):
            usable = valid[:, index].reshape(-1, 1, 1, 1)
            warped, inside = warp_view(depth, K.to(depth.dtype), poses[:, index].to(depth.dtype), views[:, index])
            best = torch.minimum(best, torch.where(inside & usable, photometric_error(warped, rgb), unseen))
            unwarped = photometric_error(views[:, index], rgb)
            best_unwarped = torch.minimum(best_unwarped, torch.where(usable, unwarped, unseen))
        return best, best_unwarped

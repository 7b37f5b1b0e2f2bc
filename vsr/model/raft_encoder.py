"""RAFT's feature and context encoders with convolutions run in horizontal stripes: the same maps,
a lower peak.

torchvision's ``FeatureEncoder`` holds about five 64-channel maps at half the input's resolution at
its peak on a CPU (each oneDNN convolution reorders its whole input and output), which for a
5120x2880 frame is 4.5 GB. ``encode`` computes the same layers in the same order, but every
convolution whose output is larger than ``stripe_bytes`` runs stripe by stripe (each stripe of
output rows from the input rows it needs, with the convolution's zero padding added at the map's
edges only) into one output map, and the norms, residual sums and ReLUs run in place on whole maps
(instance norms need the whole map's statistics). So the encoder holds three maps at its peak; the
result equals the module's own up to float rounding (a convolution over a stripe takes the same
products, the norms the same statistics; the kernels may sum them in another order).

Encoders of another layout (``raft_small``'s bottleneck blocks) are run as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.optical_flow.raft import FeatureEncoder, ResidualBlock

STRIPE_BYTES = 64 * 2**20  # output bytes of one stripe; convolutions smaller than this run whole


def encode(encoder: nn.Module, image: Tensor, *, stripe_bytes: int = STRIPE_BYTES) -> Tensor:
    """``encoder(image)`` for torchvision's RAFT ``FeatureEncoder`` (feature or context), with a lower peak."""
    if not _standard(encoder):
        return encoder(image)
    x = _conv_norm_act(encoder.convnormrelu, image, stripe_bytes)
    for layer in (encoder.layer1, encoder.layer2, encoder.layer3):
        for block in layer:
            x = _residual(block, x, stripe_bytes)
    return _striped_conv(encoder.conv, x, stripe_bytes)


def _standard(encoder: nn.Module) -> bool:
    """Whether ``encoder`` is laid out as torchvision's RAFT large encoders (residual blocks)."""
    if not isinstance(encoder, FeatureEncoder):
        return False
    blocks = [b for layer in (encoder.layer1, encoder.layer2, encoder.layer3) for b in layer]
    return all(isinstance(b, ResidualBlock) for b in blocks) and isinstance(encoder.conv, nn.Conv2d)


def _residual(block: ResidualBlock, x: Tensor, stripe_bytes: int) -> Tensor:
    """``block(x)``: ``relu(downsample(x) + convnormrelu2(convnormrelu1(x)))``, the sum and ReLU in place."""
    y = _conv_norm_act(block.convnormrelu1, x, stripe_bytes)
    y = _conv_norm_act(block.convnormrelu2, y, stripe_bytes)
    shortcut = x if isinstance(block.downsample, nn.Identity) else _conv_norm_act(block.downsample, x, stripe_bytes)
    y += shortcut
    return F.relu_(y)


def _conv_norm_act(sequence: nn.Sequential, x: Tensor, stripe_bytes: int) -> Tensor:
    """A ``Conv2dNormActivation`` (convolution, then the norm and the activation, if any, in order)."""
    conv, *rest = list(sequence)
    y = _striped_conv(conv, x, stripe_bytes)
    for module in rest:
        if isinstance(module, nn.ReLU):
            y = F.relu_(y)
        else:
            y = _norm_(module, y)
    return y


def _norm_(norm: nn.Module, y: Tensor) -> Tensor:
    """``norm(y)``, in place on ``y`` for RAFT's norms (instance norm; batch norm in eval mode): the
    same formula, ``(y - mean) / sqrt(var + eps)`` then the affine part, with no second map."""
    if isinstance(norm, nn.InstanceNorm2d) and not norm.track_running_stats:
        var, mean = torch.var_mean(y, dim=(2, 3), keepdim=True, correction=0)
        y.sub_(mean).mul_(torch.rsqrt(var + norm.eps))
        if norm.affine:
            y.mul_(norm.weight[None, :, None, None]).add_(norm.bias[None, :, None, None])
        return y
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_mean is not None:
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.affine:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale + (norm.bias if norm.affine else 0)
        return y.mul_(scale[None, :, None, None]).add_(shift[None, :, None, None])
    return norm(y)  # another norm: as the module computes it (a new map)


def _striped_conv(conv: nn.Conv2d, x: Tensor, stripe_bytes: int) -> Tensor:
    """``conv(x)`` computed in stripes of output rows of at most ``stripe_bytes`` each."""
    batch, _, height, width = x.shape
    (kh, kw), (sh, _), (ph, pw), (dh, _) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - conv.dilation[1] * (kw - 1) - 1) // conv.stride[1] + 1
    row_bytes = batch * conv.out_channels * out_w * x.element_size()
    rows = max(1, stripe_bytes // row_bytes)
    if rows >= out_h or conv.padding_mode != "zeros" or conv.groups != 1:
        return conv(x)
    out: Tensor | None = None
    for first in range(0, out_h, rows):
        last = min(out_h, first + rows)
        top, bottom = first * sh - ph, (last - 1) * sh - ph + dh * (kh - 1) + 1  # input rows, padding included
        piece = x[:, :, max(top, 0):min(bottom, height)]
        piece = F.pad(piece, (pw, pw, max(0, -top), max(0, bottom - height)))
        stripe = F.conv2d(piece, conv.weight, conv.bias, conv.stride, 0, conv.dilation)
        if out is None:  # the convolution's own output dtype (autocast may change it)
            out = stripe.new_empty((batch, conv.out_channels, out_h, out_w))
        out[:, :, first:last] = stripe
    assert out is not None
    return out

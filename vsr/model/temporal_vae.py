"""The temporal tiny autoencoder of Stream-DiffVSR (MODEL.md section 7), as a diffusers model class.

A TAESD-style x4 autoencoder whose blocks carry a Temporal Processor Module (TPM): the decoder's
blocks can be given the encoder features of the previous output (warped to the current frame) and
mix them into their own features. Only two paths are used at inference:

- ``encoder_features(warped)``: HR image (B, 3, 4h, 4w), [-1, 1] convention (not rescaled) -> the
  outputs of the encoder's temporal blocks, already reversed into decoder order.
- ``decode(latent, features)``: latent (B, 4, h, w) -> image (B, 3, 4h, 4w) in the [-1, 1]
  convention, NOT clamped (the next frame warps this raw value).

Temporal features are passed as an explicit argument; no state lives in the modules.
State-dict keys match the published ``vae/`` folder (``encoder.layers.N...``, ``decoder.layers.N...``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.activations import get_activation
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

TPM_POOL = 4  # fixed pooling kernel of the Temporal Processor Module (MODEL.md 7.1)


class TemporalBlock(nn.Module):
    """Residual conv block with an optional TPM. Input/output (B, C, H, W), any range."""

    def __init__(self, in_channels: int, out_channels: int, act_fn: str) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            get_activation(act_fn),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            get_activation(act_fn),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else nn.Identity()
        )
        self.fuse = nn.ReLU()
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.temporal_processor = nn.Sequential(
            nn.Conv1d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(out_channels, out_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C_in, H, W); ``previous`` (B, C_out, H, W) temporal features or None."""
        feat = self.conv(x)
        if previous is None:
            return self.fuse(feat + self.skip(x))
        return self.fuse((feat + 0.1 * self._tpm(feat, previous)) + self.skip(x))

    def _tpm(self, feat: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Pool both to (H/4, W/4), mix along a [current, previous] sequence, resize back to (H, W)."""
        b, c, height, width = feat.shape
        cur = F.avg_pool2d(feat, TPM_POOL).flatten(2)
        prev = F.avg_pool2d(previous, TPM_POOL).flatten(2)
        hw = cur.shape[-1]
        mixed = self.temporal_processor(torch.cat([cur, prev], dim=-1))
        merged = self.alpha * mixed[..., :hw] + (1 - self.alpha) * mixed[..., hw:]
        merged = merged.reshape(b, c, height // TPM_POOL, width // TPM_POOL)
        return F.interpolate(merged, size=(height, width), mode="bilinear", align_corners=False)


class TemporalEncoder(nn.Module):
    """Encoder layer list: stage convs (stride 2 after the first), temporal blocks, final conv."""

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int], blocks: Sequence[int], act_fn: str):
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            if stage == 0:
                layers.append(nn.Conv2d(previous, width, 3, padding=1))
            else:
                layers.append(nn.Conv2d(previous, width, 3, padding=1, stride=2, bias=False))
            layers.extend(TemporalBlock(width, width, act_fn) for _ in range(count))
            previous = width
        layers.append(nn.Conv2d(previous, out_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every temporal block, in encoder order. The final conv is skipped (unused)."""
        out: list[torch.Tensor] = []
        for layer in self.layers[:-1]:
            x = layer(x)
            if isinstance(layer, TemporalBlock):
                out.append(x)
        return out


class TemporalDecoder(nn.Module):
    """Decoder layer list: conv + act, then per stage temporal blocks, x2 upsample and a conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        act_fn: str,
        upsample_fn: str,
        upsampling_scaling_factor: int,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1), get_activation(act_fn)]
        previous = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            last = stage == len(widths) - 1
            layers.extend(TemporalBlock(previous if i == 0 else width, width, act_fn) for i in range(count))
            previous = width
            if not last:
                layers.append(nn.Upsample(scale_factor=upsampling_scaling_factor, mode=upsample_fn))
            layers.append(nn.Conv2d(width, out_channels if last else width, 3, padding=1, bias=last))
        self.layers = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor, features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(B, C_lat, h, w) latent -> (B, 3, s*h, s*w) image in [-1, 1] convention, unclamped."""
        x = torch.tanh(latent / 3) * 3
        k = 0
        for layer in self.layers:
            if isinstance(layer, TemporalBlock):
                x = layer(x, None if features is None else features[k])
                k += 1
            else:
                x = layer(x)
        return x.mul(2).sub(1)


class TemporalAutoencoderTiny(ModelMixin, ConfigMixin):
    """Stream-DiffVSR's temporal tiny VAE; loads the published ``vae/`` folder with ``from_pretrained``.

    ``block_out_channels`` in the published config.json is not used for the layers; it is kept equal
    to ``decoder_block_out_channels`` (the pipeline derives the x4 scale factor from it).
    The latent_magnitude / latent_shift / shift_factor / force_upcast values are inference no-ops.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        encoder_block_out_channels: Sequence[int] = (64, 64, 64),
        decoder_block_out_channels: Sequence[int] = (64, 64, 64),
        act_fn: str = "relu",
        upsample_fn: str = "nearest",
        latent_channels: int = 4,
        upsampling_scaling_factor: int = 2,
        num_encoder_blocks: Sequence[int] = (1, 3, 3),
        num_decoder_blocks: Sequence[int] = (3, 3, 1),
        latent_magnitude: float = 3.0,
        latent_shift: float = 0.5,
        force_upcast: bool = False,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        block_out_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        enc_w, dec_w = list(encoder_block_out_channels), list(decoder_block_out_channels)
        if len(enc_w) != len(num_encoder_blocks) or len(dec_w) != len(num_decoder_blocks):
            raise ValueError(
                "vae config: encoder/decoder_block_out_channels and num_encoder/decoder_blocks must have the same "
                f"length; got {enc_w} / {list(num_encoder_blocks)} and {dec_w} / {list(num_decoder_blocks)}."
            )
        enc_blocks = [w for w, n in zip(enc_w, num_encoder_blocks) for _ in range(n)]
        dec_blocks = [w for w, n in zip(dec_w, num_decoder_blocks) for _ in range(n)]
        if enc_blocks[::-1] != dec_blocks:
            raise ValueError(
                "vae config: decoder temporal block k takes the features of encoder block (last - k), so the "
                f"encoder block widths reversed {enc_blocks[::-1]} must equal the decoder's {dec_blocks}."
            )
        self.register_to_config(block_out_channels=tuple(dec_w))
        self.encoder = TemporalEncoder(in_channels, latent_channels, enc_w, num_encoder_blocks, act_fn)
        self.decoder = TemporalDecoder(
            latent_channels, out_channels, dec_w, num_decoder_blocks, act_fn, upsample_fn, upsampling_scaling_factor
        )

    @property
    def scale_factor(self) -> int:
        """Spatial factor between latent and image (4 for the published config)."""
        return self.config.upsampling_scaling_factor ** (len(self.config.decoder_block_out_channels) - 1)

    def encoder_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) image in [-1, 1] convention (fed as is) -> temporal features in decoder order."""
        return self.encoder.features(image)[::-1]

    def decode(self, latent: torch.Tensor, features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(B, C_lat, h, w) latent (already divided by scaling_factor) -> (B, 3, 4h, 4w), [-1, 1], unclamped."""
        return self.decoder(latent, features)

    def forward(self, latent: torch.Tensor, features: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        return self.decode(latent, features)

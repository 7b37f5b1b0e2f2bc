"""The ARTG branch: diffusers' ``ControlNetModel`` run with its per-frame work hoisted out of the step loop.

Within a frame the ControlNet sees the same warped HR image at every denoising step, and the
timesteps are the same for every frame. diffusers' ``ControlNetModel.forward`` recomputes the
conditioning embedding (HR image -> latent grid, the most expensive part at HR) and the time
embedding on every call. ``ARTGBranch`` computes the embedding once per frame (``condition``) and
the time embeddings once per timestep, then runs the ControlNet's own modules in the order of
``ControlNetModel.forward`` (conditioning scale 1.0, no guess mode, no class or addition
embeddings), so the residuals are the same numbers.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel


class ARTGBranch:
    """Wraps a loaded ``ControlNetModel`` (owned, not modified)."""

    def __init__(self, controlnet: ControlNetModel) -> None:
        config = controlnet.config
        if controlnet.class_embedding is not None or config.addition_embed_type is not None:
            raise ValueError(
                "The ARTG ControlNet must have no class or addition embedding (Stream-DiffVSR's has none)."
            )
        if config.global_pool_conditions or config.controlnet_conditioning_channel_order != "rgb":
            raise ValueError("The ARTG ControlNet must use rgb conditioning without global pooling.")
        self.controlnet = controlnet
        self._time: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def condition(self, warped: torch.Tensor) -> torch.Tensor:
        """Conditioning embedding of the warped previous output: (1, 3, 4h, 4w) -> (1, C0, h, w), model dtype."""
        return self.controlnet.controlnet_cond_embedding(warped)

    def time_embedding(self, timestep: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Time embedding (1, D) for a 0-d int timestep, cached per (t, dtype, device)."""
        key = (int(timestep), like.dtype, like.device)
        emb = self._time.get(key)
        if emb is None:
            cn = self.controlnet
            t = timestep.reshape(1).to(like.device).expand(like.shape[0])
            emb = cn.time_embedding(cn.time_proj(t).to(dtype=like.dtype), None)
            self._time[key] = emb
        return emb

    def residuals(
        self, sample: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, cond: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(12 down residuals, mid residual) for model input ``sample`` (1, 7, h, w) at ``timestep``."""
        return self.trunk(sample, self.time_embedding(timestep, sample), text, cond)

    def trunk(
        self, sample: torch.Tensor, emb: torch.Tensor, text: torch.Tensor, cond: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The residuals from a ready time embedding ``emb``: tensors in, tensors out (what gets compiled)."""
        return controlnet_trunk(self.controlnet, sample, emb, text, cond)


def controlnet_trunk(
    cn: ControlNetModel, sample: torch.Tensor, emb: torch.Tensor, text: torch.Tensor, cond: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``ControlNetModel.forward`` after its embeddings: conv_in + conditioning, down/mid blocks, projections."""
    hidden = cn.conv_in(sample) + cond
    skips: tuple[torch.Tensor, ...] = (hidden,)
    for block in cn.down_blocks:
        if getattr(block, "has_cross_attention", False):
            hidden, res = block(hidden_states=hidden, temb=emb, encoder_hidden_states=text)
        else:
            hidden, res = block(hidden_states=hidden, temb=emb)
        skips += res
    if cn.mid_block is not None:
        if getattr(cn.mid_block, "has_cross_attention", False):
            hidden = cn.mid_block(hidden, emb, encoder_hidden_states=text)
        else:
            hidden = cn.mid_block(hidden, emb)
    down = [proj(skip) for skip, proj in zip(skips, cn.controlnet_down_blocks)]
    return down, cn.controlnet_mid_block(hidden)

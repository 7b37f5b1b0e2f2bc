"""The empty-prompt text embedding (MODEL.md section 3), computed once and the text encoder released.

Stream-DiffVSR always conditions on the empty prompt without guidance, so the embedding is a
constant: (1, 77, hidden) float32, the CLIP text encoder's last_hidden_state after the final
layer norm, no attention mask. The attention is written out in transformers 4.37.2's operation order
(query scaled before Q.K^T, causal mask of float32-min added, softmax, then .V), which reproduces the
reference embedding exactly; newer transformers differ by about 1e-6.
"""

from __future__ import annotations

import logging

import torch
from transformers import CLIPTextModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


def empty_prompt_ids(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Token ids (1, model_max_length) int64 of the empty prompt: [BOS, EOS, pad...]."""
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return ids.to(torch.int64)


def _attention(attn: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """CLIP self-attention in the 4.37.2 order. x (B, T, D) -> (B, T, D)."""
    bsz, tgt, dim = x.shape
    heads = attn.num_heads
    head_dim = dim // heads
    scale = head_dim**-0.5

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(bsz, tgt, heads, head_dim).transpose(1, 2).contiguous().view(bsz * heads, tgt, head_dim)

    q = split(attn.q_proj(x) * scale)
    k = split(attn.k_proj(x))
    v = split(attn.v_proj(x))
    weights = torch.bmm(q, k.transpose(1, 2))
    weights = (weights.view(bsz, heads, tgt, tgt) + mask).view(bsz * heads, tgt, tgt)
    weights = torch.softmax(weights, dim=-1)
    out = torch.bmm(weights, v).view(bsz, heads, tgt, head_dim).transpose(1, 2).reshape(bsz, tgt, dim)
    return attn.out_proj(out)


@torch.inference_mode()
def encode_empty_prompt(text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """(1, 77, hidden) float32 embedding of the empty prompt, on the CPU, in the reference's arithmetic."""
    ids = empty_prompt_ids(tokenizer)
    model = getattr(text_encoder, "text_model", text_encoder)  # transformers < 5 nests it
    x = model.embeddings(input_ids=ids)
    tokens = x.shape[1]
    mask = torch.full((tokens, tokens), torch.finfo(x.dtype).min, dtype=x.dtype).triu(1)[None, None]
    for layer in model.encoder.layers:
        residual = x
        x = _attention(layer.self_attn, layer.layer_norm1(x), mask)
        x = residual + x
        residual = x
        x = residual + layer.mlp(layer.layer_norm2(x))
    out = model.final_layer_norm(x)
    logger.debug("empty-prompt embedding %s computed", tuple(out.shape))
    return out.detach().clone()

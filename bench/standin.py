"""The full-size stand-in model for benchmarks: published layout, random weights.

Speed depends on the size of the networks, not on their values, so benchmarks run a checkpoint
built here from the documented configs (UNet 472,374,020 parameters, ControlNet 207,699,264, the
published temporal VAE config, a 1-layer 1024-wide CLIP text encoder with the fixture's tokenizer,
RAFT large), seeded, saved once in the published folder layout under
~/.cache/stream-diffvsr-bench (outside the repository; about 2.7 GB) so the benchmark loads it
through the product's own loader.

Run: ``.venv/bin/python bench/standin.py`` (prints the folder; builds it when missing).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from vsr.model.temporal_vae import TemporalAutoencoderTiny

ROOT = Path(__file__).resolve().parent.parent

logger = logging.getLogger("bench.standin")

CACHE = Path.home() / ".cache" / "stream-diffvsr-bench"
FOLDER = CACHE / "stream-diffvsr-standin-v1"
FIXTURE = ROOT / "tests" / "fixtures" / "stream-diffvsr-tiny" / "model"  # configs the stand-in copies

UNET_CONFIG = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [256, 512, 512, 1024],
    "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 7, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": [True, True, True, False],
    "out_channels": 4, "sample_size": 128,
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False, "use_linear_projection": True,
}
PARAMS = {"unet": 472_374_020, "controlnet": 207_699_264, "vae": 2_052_501, "raft": 5_257_536}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(folder: Path = FOLDER) -> Path:
    """Build the stand-in checkpoint in ``folder`` (+ raft_large.safetensors next to it) and return it."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    from safetensors.torch import save_file
    from torchvision.models.optical_flow import raft_large
    from transformers import CLIPTextConfig, CLIPTextModel

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(20240611)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    torch.manual_seed(20240612)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(64, 128, 256))
    with torch.no_grad():  # from_unet zero-initialises the residual projections; give them values
        for module in [controlnet.controlnet_cond_embedding.conv_out, controlnet.controlnet_mid_block,
                       *controlnet.controlnet_down_blocks]:
            for p in module.parameters():
                p.normal_(0.0, 0.02)
    torch.manual_seed(20240613)
    vae = TemporalAutoencoderTiny()
    torch.manual_seed(20240614)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16,
                                        intermediate_size=2048, vocab_size=519, bos_token_id=517, eos_token_id=518,
                                        pad_token_id=0, max_position_embeddings=77, hidden_act="gelu"))
    torch.manual_seed(20240615)
    raft = raft_large(weights=None, progress=False)
    for name, model in (("unet", unet), ("controlnet", controlnet), ("vae", vae), ("raft", raft)):
        if _count(model) != PARAMS[name]:
            raise RuntimeError(
                f"stand-in {name} has {_count(model):,} parameters, BENCH-MODEL.md says {PARAMS[name]:,}"
            )
    unet.save_pretrained(tmp / "unet")
    controlnet.save_pretrained(tmp / "controlnet")
    vae.save_pretrained(tmp / "vae")
    text.save_pretrained(tmp / "text_encoder")
    for sub in ("scheduler", "tokenizer"):
        shutil.copytree(FIXTURE / sub, tmp / sub)
    for path in (tmp / "scheduler", tmp / "tokenizer", *(tmp / "scheduler").iterdir(), *(tmp / "tokenizer").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.copy(FIXTURE / "model_index.json", tmp / "model_index.json")
    (tmp / "model_index.json").chmod(0o644)
    save_file(raft.state_dict(), str(tmp / "raft_large.safetensors"))
    (tmp / "STANDIN.json").write_text(json.dumps({"params": PARAMS, "doc": "bench/standin.py"}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def ensure(folder: Path = FOLDER) -> Path:
    """The stand-in folder, built first if it is missing or incomplete."""
    if not (folder / "STANDIN.json").is_file():
        logger.info("building the full-size stand-in in %s (once)", folder)
        build(folder)
    return folder


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(2)
    print(ensure())

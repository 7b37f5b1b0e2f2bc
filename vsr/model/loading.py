"""Find and load a Stream-DiffVSR checkpoint: hub id or local folder, with errors that name the fix.

The published layout (``model_index.json`` plus ``unet/ controlnet/ vae/ scheduler/ text_encoder/
tokenizer/``) is read with each library's own ``from_pretrained(folder, subfolder=...)``. A hub id
is downloaded once with huggingface_hub (its progress bars and cache; only the needed subfolders).
An unreachable hub fails within seconds: the endpoint is probed with a short TCP connect before any
download, and a cached snapshot is used instead when there is one.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
import torch
from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from vsr.model.errors import ConfigMismatchError, CorruptWeightsError, HubUnreachableError, ModelNotFoundError
from vsr.model.network import REACH_TIMEOUT_S, plain_reason, unreachable_reason
from vsr.model.temporal_vae import TemporalAutoencoderTiny
from vsr.model.text import encode_empty_prompt

logger = logging.getLogger(__name__)

SUBFOLDERS = ("unet", "controlnet", "vae", "scheduler", "text_encoder", "tokenizer")
ALLOW_PATTERNS = ["model_index.json"] + [f"{s}/*.{ext}" for s in SUBFOLDERS for ext in ("json", "safetensors", "txt")]


@dataclass
class Checkpoint:
    """Everything the streaming upscaler needs, loaded on the CPU (networks in the dtype asked for)."""

    folder: Path
    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    vae: TemporalAutoencoderTiny
    scheduler: DDIMScheduler
    prompt_embeds: torch.Tensor  # (1, 77, cross_attention_dim) float32


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") != 1 or Path(model_id).exists()


def resolve_model_folder(
    model_id: str,
    *,
    endpoint: str | None = None,
    timeout: float = REACH_TIMEOUT_S,
    cache_dir: str | Path | None = None,
) -> Path:
    """A local folder holding the checkpoint: ``model_id`` itself, or the hub snapshot (downloaded if needed).

    ``endpoint`` and ``cache_dir`` default to huggingface_hub's (HF_ENDPOINT, HF_HUB_CACHE).
    """
    if _looks_like_path(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise ModelNotFoundError(
                f"Model folder {folder} does not exist. Fix: give a folder with the Stream-DiffVSR layout "
                f"({', '.join(SUBFOLDERS)}) or a hub id such as Jamichsu/Stream-DiffVSR.",
                subject=f"the model folder {folder}", reason="it does not exist", setting="model_id", remedy="path",
            )
        check_layout(folder)
        return folder
    endpoint = endpoint or huggingface_hub.constants.ENDPOINT
    fix = (
        "Fix: pass a local model folder (--model-id /path/to/Stream-DiffVSR), download it once on a machine with "
        "internet access into the Hugging Face cache (hf download " + model_id + "), or set HF_HUB_OFFLINE=1 to use "
        "the cache only."
    )
    cache = str(cache_dir or huggingface_hub.constants.HF_HUB_CACHE)
    facts: dict[str, Any] = {"subject": f"the model {model_id!r}", "setting": "model_id", "cache": cache}
    kwargs: dict[str, Any] = {
        "allow_patterns": ALLOW_PATTERNS, "endpoint": endpoint, "etag_timeout": timeout, "cache_dir": cache_dir,
    }
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    reason = None if offline else unreachable_reason(endpoint, timeout)
    try:
        if offline or reason is not None:
            folder = Path(snapshot_download(model_id, local_files_only=True, **kwargs))
            if reason is not None:
                logger.warning("hub %s unreachable (%s); using the cached snapshot %s", endpoint, reason, folder)
        else:
            folder = Path(snapshot_download(model_id, **kwargs))
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"Model {model_id!r} was not found on {endpoint} (or needs a login). Fix: check the id "
            "(default Jamichsu/Stream-DiffVSR), log in with `hf auth login` for a private repo, or pass a local folder.",
            **facts, reason=f"{endpoint} has no such model, or it needs a login", remedy="hub-id",
        ) from exc
    except LocalEntryNotFoundError as exc:
        why = "offline mode (HF_HUB_OFFLINE) is on" if offline else f"the hub {endpoint} is unreachable ({reason})"
        raise HubUnreachableError(
            f"Cannot get model {model_id!r}: {why} and it is not in the local cache. {fix}",
            **facts, reason=f"{why} and it is not in the download cache", remedy="download",
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        why = plain_reason(exc, urllib.parse.urlparse(endpoint).hostname or endpoint, timeout)
        raise HubUnreachableError(f"Downloading model {model_id!r} from {endpoint} failed: {why}. {fix}",
                                  **facts, reason=f"downloading it failed: {why}", remedy="download") from exc
    check_layout(folder)
    return folder


def check_layout(folder: Path) -> None:
    """Raise ModelNotFoundError naming the first missing subfolder or config file."""
    for sub in SUBFOLDERS:
        if not (folder / sub).is_dir():
            raise ModelNotFoundError(
                f"Model folder {folder} has no {sub}/ subfolder. Fix: use a complete Stream-DiffVSR checkpoint "
                f"(needs {', '.join(s + '/' for s in SUBFOLDERS)})."
            )
    for sub, name in [("unet", "config.json"), ("controlnet", "config.json"), ("vae", "config.json"),
                      ("scheduler", "scheduler_config.json"), ("text_encoder", "config.json")]:
        if not (folder / sub / name).is_file():
            raise ModelNotFoundError(f"{folder / sub / name} is missing. Fix: download the checkpoint again.")


def _weights_file(folder: Path, sub: str) -> Path:
    files = sorted((folder / sub).glob("*.safetensors")) or sorted((folder / sub).glob("*.bin"))
    if not files:
        raise ModelNotFoundError(f"{folder / sub} holds no weights (.safetensors). Fix: download the checkpoint again.")
    return files[0]


@contextmanager
def _no_library_progress_bars() -> Iterator[None]:
    """transformers and diffusers draw their own tqdm bars while loading ("Loading weights: 100%|...");
    the CLI and the web app show their own progress, so the libraries' bars are off for the load and
    set back as they were afterwards."""
    libraries = (transformers_logging, diffusers_logging)
    were = [library.is_progress_bar_enabled() for library in libraries]
    for library in libraries:
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, enabled in zip(libraries, were):
            if enabled:
                library.enable_progress_bar()


def _load_model(cls: Any, folder: Path, sub: str, dtype: torch.dtype = torch.float32) -> Any:
    """``cls.from_pretrained(folder, subfolder=sub, torch_dtype=dtype)`` with every failure named by file."""
    config = folder / sub / "config.json"
    weights = _weights_file(folder, sub)
    try:
        json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptWeightsError(f"{config} is not valid JSON ({exc}). Fix: download the checkpoint again.") from exc
    try:
        with _no_library_progress_bars():
            model, info = cls.from_pretrained(folder, subfolder=sub, output_loading_info=True, torch_dtype=dtype)
    except OSError as exc:
        raise CorruptWeightsError(
            f"Cannot read {weights} ({exc}). Fix: the file is damaged or truncated; download it again."
        ) from exc
    except (ValueError, RuntimeError, TypeError) as exc:
        text = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else type(exc).__name__
        if any(word in text.lower() for word in ("shape", "size", "mismatch", "config", "expected")):
            raise ConfigMismatchError(
                f"{config} does not fit the weights in {weights}: {text}. Fix: use the config.json that was saved "
                "with these weights."
            ) from exc
        raise CorruptWeightsError(
            f"Cannot load {weights} with {config} ({type(exc).__name__}: {text}). Fix: download the checkpoint again."
        ) from exc
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k}: {list(v)[:5]}" for k, v in problems.items())
        raise ConfigMismatchError(
            f"{config} does not fit the weights in {weights} ({detail}). Fix: use the config saved with these weights."
        )
    return model.eval().requires_grad_(False)


def load_checkpoint(
    model_id: str,
    *,
    dtype: torch.dtype = torch.float32,
    endpoint: str | None = None,
    timeout: float = REACH_TIMEOUT_S,
) -> Checkpoint:
    """Load every component on the CPU (UNet, ControlNet, VAE in ``dtype``), compute the empty-prompt
    embedding in float32 and drop the text encoder."""
    folder = resolve_model_folder(model_id, endpoint=endpoint, timeout=timeout)
    unet = _load_model(UNet2DConditionModel, folder, "unet", dtype)
    if unet.class_embedding is not None:
        raise ConfigMismatchError(
            f"{folder / 'unet' / 'config.json'} defines a class embedding (num_class_embeds / class_embed_type); "
            "Stream-DiffVSR's UNet has none. Fix: use the Stream-DiffVSR unet/ folder."
        )
    controlnet = _load_model(ControlNetModel, folder, "controlnet", dtype)
    vae = _load_model(TemporalAutoencoderTiny, folder, "vae", dtype)
    try:
        scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    except (ValueError, OSError) as exc:
        raise CorruptWeightsError(
            f"Cannot read {folder / 'scheduler' / 'scheduler_config.json'} ({exc}). Fix: download the checkpoint again."
        ) from exc
    text_encoder = _load_model(CLIPTextModel, folder, "text_encoder")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    except (ValueError, OSError, TypeError) as exc:
        raise CorruptWeightsError(
            f"Cannot read the tokenizer in {folder / 'tokenizer'} ({exc}). Fix: download the checkpoint again."
        ) from exc
    prompt_embeds = encode_empty_prompt(text_encoder, tokenizer)
    del text_encoder, tokenizer  # only the constant embedding is needed from here on
    _check_widths(folder, unet, controlnet, vae, prompt_embeds)
    return Checkpoint(folder, unet, controlnet, vae, scheduler, prompt_embeds)


def _check_widths(folder: Path, unet: Any, controlnet: Any, vae: TemporalAutoencoderTiny, embeds: torch.Tensor) -> None:
    latent, image = vae.config.latent_channels, 3
    for name, model in (("unet", unet), ("controlnet", controlnet)):
        if model.config.in_channels != latent + image:
            raise ConfigMismatchError(
                f"{folder / name / 'config.json'}: in_channels is {model.config.in_channels}, but the latent "
                f"({latent} channels) plus the RGB frame (3) make {latent + image}. Fix: use matching checkpoints."
            )
        if model.config.cross_attention_dim != embeds.shape[-1]:
            raise ConfigMismatchError(
                f"{folder / name / 'config.json'}: cross_attention_dim {model.config.cross_attention_dim} does not "
                f"match the text encoder width {embeds.shape[-1]}. Fix: use matching checkpoints."
            )
    if unet.config.out_channels != latent:
        raise ConfigMismatchError(
            f"{folder / 'unet' / 'config.json'}: out_channels {unet.config.out_channels} != vae latent_channels "
            f"{latent}. Fix: use matching checkpoints."
        )

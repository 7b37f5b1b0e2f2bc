"""Loading a checkpoint and RAFT weights: local folders, the hub cache, and every failure named by file.

The hub is never contacted: an unreachable hub is simulated with a refused local endpoint
(http://127.0.0.1:9), and hub caches are built in tmp_path.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vsr.model.errors import (
    ConfigMismatchError,
    CorruptWeightsError,
    HubUnreachableError,
    ModelLoadError,
    ModelNotFoundError,
)
from vsr.model.flow import load_raft
from vsr.model.loading import SUBFOLDERS, load_checkpoint, resolve_model_folder
from vsr.model.temporal_vae import TemporalAutoencoderTiny

REFUSED = "http://127.0.0.1:9"  # discard port: the connection is refused at once


def model_copy(fixture_dir: Path, tmp_path: Path, *, copy: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder in tmp_path: subfolders in ``copy`` are writable copies, the rest symlinks."""
    dest = tmp_path / "model"
    dest.mkdir()
    src = fixture_dir / "model"
    shutil.copy(src / "model_index.json", dest / "model_index.json")
    for sub in SUBFOLDERS:
        if sub in drop:
            continue
        if sub in copy:
            shutil.copytree(src / sub, dest / sub)
            for p in [dest / sub, *(dest / sub).iterdir()]:
                p.chmod(0o755 if p.is_dir() else 0o644)
        else:
            (dest / sub).symlink_to(src / sub)
    return dest


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_local_folder_loads_every_component(fixture_dir: Path) -> None:
    ckpt = load_checkpoint(str(fixture_dir / "model"))
    assert ckpt.folder == fixture_dir / "model"
    assert ckpt.prompt_embeds.shape == (1, 77, 32) and ckpt.prompt_embeds.dtype == torch.float32
    assert sum(p.numel() for p in ckpt.unet.parameters()) == 716_324
    assert sum(p.numel() for p in ckpt.controlnet.parameters()) == 315_048
    assert sum(p.numel() for p in ckpt.vae.parameters()) == 130_677
    assert not hasattr(ckpt, "text_encoder")
    gc.collect()
    from transformers import CLIPTextModel

    assert not [o for o in gc.get_objects() if type(o) is CLIPTextModel], "the text encoder was not released"


def test_loading_draws_no_progress_bar_of_the_libraries(fixture_dir: Path, capsys) -> None:
    """transformers 5 drew its own "Loading weights: 100%|###| 36/36" bar on the terminal, above the
    tool's own progress lines, at every load; the libraries' bars are left as they were afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    load_checkpoint(str(fixture_dir / "model"))
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err, err
    assert transformers_logging.is_progress_bar_enabled() and diffusers_logging.is_progress_bar_enabled()


def test_vae_loads_with_no_missing_or_unexpected_keys(fixture_dir: Path) -> None:
    vae, info = TemporalAutoencoderTiny.from_pretrained(
        fixture_dir / "model", subfolder="vae", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = load_file(fixture_dir / "model" / "vae" / "diffusion_pytorch_model.safetensors")
    assert set(vae.state_dict()) == set(state)
    assert vae.config.block_out_channels == (16, 16, 16) and vae.scale_factor == 4
    assert float(vae.decoder.layers[2].alpha.detach()) == pytest.approx(0.68631, abs=1e-5)


def test_missing_folder_and_subfolder_are_named(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_checkpoint(str(tmp_path / "nowhere"))
    folder = model_copy(fixture_dir, tmp_path, drop=("controlnet",))
    with pytest.raises(ModelNotFoundError, match=r"no controlnet/ subfolder"):
        load_checkpoint(str(folder))


def test_missing_config_file_is_named(fixture_dir: Path, tmp_path: Path) -> None:
    folder = model_copy(fixture_dir, tmp_path, copy=("vae",))
    (folder / "vae" / "config.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"vae/config\.json is missing"):
        load_checkpoint(str(folder))


def test_config_that_does_not_fit_the_weights_is_named(fixture_dir: Path, tmp_path: Path) -> None:
    folder = model_copy(fixture_dir, tmp_path, copy=("unet",))
    edit_json(folder / "unet" / "config.json", block_out_channels=[32, 32, 64, 64])
    with pytest.raises(ConfigMismatchError, match=r"unet/config\.json does not fit .*unet/diffusion_pytorch_model"):
        load_checkpoint(str(folder))


def test_vae_config_with_more_blocks_than_the_weights(fixture_dir: Path, tmp_path: Path) -> None:
    folder = model_copy(fixture_dir, tmp_path, copy=("vae",))
    edit_json(folder / "vae" / "config.json", num_encoder_blocks=[1, 3, 4], num_decoder_blocks=[4, 3, 1])
    with pytest.raises(ConfigMismatchError, match=r"vae/config\.json does not fit"):
        load_checkpoint(str(folder))


def test_corrupt_weights_and_config_are_named(fixture_dir: Path, tmp_path: Path) -> None:
    folder = model_copy(fixture_dir, tmp_path, copy=("controlnet",))
    weights = folder / "controlnet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CorruptWeightsError, match=r"controlnet/diffusion_pytorch_model\.safetensors"):
        load_checkpoint(str(folder))
    (folder / "controlnet" / "config.json").write_text('{"in_channels": 7,')
    with pytest.raises(CorruptWeightsError, match=r"controlnet/config\.json is not valid JSON"):
        load_checkpoint(str(folder))


def test_unet_with_a_class_embedding_is_refused(fixture_dir: Path, tmp_path: Path) -> None:
    folder = model_copy(fixture_dir, tmp_path, copy=("unet",))
    edit_json(folder / "unet" / "config.json", num_class_embeds=1000)
    with pytest.raises(ConfigMismatchError, match=r"unet/config\.json"):
        load_checkpoint(str(folder))


def test_unreachable_hub_fails_fast_with_the_fix(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(HubUnreachableError) as info:
        resolve_model_folder("Jamichsu/Stream-DiffVSR", endpoint=REFUSED, cache_dir=tmp_path / "hub", timeout=3)
    assert time.monotonic() - start < 5
    text = str(info.value)
    assert "Jamichsu/Stream-DiffVSR" in text and "unreachable" in text
    assert "local model folder" in text and "cache" in text and "HF_HUB_OFFLINE" in text


def test_unreachable_hub_uses_a_cached_snapshot(fixture_dir: Path, tmp_path: Path) -> None:
    # The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/...}.
    repo = tmp_path / "hub" / "models--someone--tiny-vsr"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(fixture_dir / "model", repo / "snapshots" / commit, symlinks=True)
    folder = resolve_model_folder("someone/tiny-vsr", endpoint=REFUSED, cache_dir=tmp_path / "hub", timeout=3)
    assert folder == repo / "snapshots" / commit


@pytest.mark.slow
def test_hf_endpoint_env_var_reaches_the_real_loader(tmp_path: Path) -> None:
    """The product path: HF_ENDPOINT / HF_HOME as a user sets them, through load_engine."""
    code = (
        "import sys, time\n"
        "from vsr.model import load_engine, HubUnreachableError, StreamDiffVSRUpscaler\n"
        "t = time.monotonic()  # after the imports: only the loading is timed\n"
        "try:\n"
        "    load_engine('stream-diffvsr', model_id='Jamichsu/Stream-DiffVSR', device='cpu', precision='fp32')\n"
        "except HubUnreachableError as exc:\n"
        "    print(round(time.monotonic() - t, 2)); print(exc); sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    env = {**os.environ, "HF_ENDPOINT": REFUSED, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    seconds, message = result.stdout.split("\n", 1)
    assert float(seconds) < 6
    assert "HF_HUB_OFFLINE" in message and "127.0.0.1:9" in message


def test_offline_mode_without_cache_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="offline mode"):
        resolve_model_folder("someone/not-cached", endpoint=REFUSED, cache_dir=tmp_path / "hub")


# ---- RAFT weights ---------------------------------------------------------------------------


def test_raft_from_local_safetensors_and_pth(fixture_dir: Path, tmp_path: Path) -> None:
    raft = load_raft(fixture_dir / "raft_large.safetensors")
    assert not raft.training and sum(p.numel() for p in raft.parameters()) == 5_257_536
    pth = tmp_path / "raft.pth"
    torch.save(load_file(fixture_dir / "raft_large.safetensors"), pth)
    again = load_raft(pth)
    assert all(torch.equal(a, b) for a, b in zip(raft.state_dict().values(), again.state_dict().values()))


def test_raft_weight_errors_name_the_file(fixture_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="missing.pth does not exist"):
        load_raft(tmp_path / "missing.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptWeightsError, match="bad.safetensors cannot be read"):
        load_raft(bad)
    from torchvision.models.optical_flow import raft_small

    small = tmp_path / "small.pth"
    torch.save(raft_small(weights=None).state_dict(), small)
    with pytest.raises(ConfigMismatchError, match="small.pth do not fit torchvision's RAFT large"):
        load_raft(small)
    with pytest.raises(ModelNotFoundError, match="suffix '.ckpt'"):
        (tmp_path / "x.ckpt").write_bytes(b"")
        load_raft(tmp_path / "x.ckpt")


def test_raft_url_unreachable_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.monotonic()
    with pytest.raises(HubUnreachableError) as info:
        load_raft(url=f"{REFUSED}/raft_large_C_T_SKHT_V2-ff5fadd5.pth", timeout=3)
    assert time.monotonic() - start < 5
    text = str(info.value)
    assert "--flow-weights" in text and "STREAM_DIFFVSR_FLOW_WEIGHTS" in text
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "raft_large_C_T_SKHT_V2-ff5fadd5.pth") in text


def test_raft_url_served_from_the_torch_hub_cache(fixture_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(load_file(fixture_dir / "raft_large.safetensors"), cache / "raft_cached.pth")
    raft = load_raft(url=f"{REFUSED}/raft_cached.pth", timeout=3)  # no network needed
    assert sum(p.numel() for p in raft.parameters()) == 5_257_536


def test_every_load_error_is_a_runtime_error() -> None:
    for cls in (ModelNotFoundError, HubUnreachableError, CorruptWeightsError, ConfigMismatchError):
        assert issubclass(cls, ModelLoadError) and issubclass(cls, RuntimeError)

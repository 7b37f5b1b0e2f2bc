"""bench/gpu.py --smoke: every phase of the GPU benchmark runs on the CPU with the tiny configs, so the
prepared GPU run does not rot between the sessions that are lent a GPU. No timings are asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsr.switches import AUTO

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu.py"

@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench-gpu")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAM_DIFFVSR_", "TORCHINDUCTOR_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "gpu.json").read_text())
    results["_stdout"], results["_block"] = proc.stdout, (out / "gpu-block.md").read_text()
    return results


@pytest.mark.slow
def test_every_phase_ran_without_error(smoke: dict) -> None:
    assert smoke["smoke"] is True and "stopped" not in smoke
    assert list(smoke["phases"]) == ["eager", "auto", "copies", "side-by-side", "each", "compile", "best", "drift",
                                     "job", "compile-max", "aot"]
    for name, phase in smoke["phases"].items():
        assert phase["status"] == "ok", (name, phase["status"])
        for key, run in phase["runs"].items():
            assert "error" not in run, (name, key, run["error"])
            if name != "compile-max":  # the eager backend has no max-autotune: recorded as skipped
                assert "skipped" not in run, (name, key, run["skipped"])


@pytest.mark.slow
def test_runs_carry_the_measurements(smoke: dict) -> None:
    size = next(iter(smoke["sizes"]))
    eager = smoke["phases"]["eager"]["runs"][f"{size}/fp32"]
    assert eager["s_per_frame"] > 0 and eager["first_frame_s"] > 0 and eager["steady_frames"] >= 1
    parts = eager["breakdown_ms"]
    for name in ("inputs", "raft", "vae_encoder", "controlnet", "unet", "vae_decoder", "download", "frame"):
        assert parts[name] >= 0, name
    assert parts["unet"] > 0 and parts["raft"] > 0
    each = smoke["phases"]["each"]["runs"]
    assert {k.rsplit("/", 1)[1] for k in each} >= {"device-postprocess", "pinned-uploads", "flow-prefetch",
                                                   "cudnn-benchmark", "channels-last", "cuda-graphs"}
    for key, run in each.items():  # the CPU forms of the transfer switches change no pixel
        assert run["nonfinite_frames"] == 0 and run["vs_eager_8bit"]["frames"] >= 1, key
        if not key.endswith("channels-last"):
            assert run["vs_eager_8bit"]["max"] == 0, key
    compiled = smoke["phases"]["compile"]["runs"][f"{size}/fp32/auto,compile"]
    cpu_auto = set(AUTO["cpu"])  # "auto" on the CPU, which the smoke run adds each switch to
    assert set(compiled["optimisations"].split(",")) == cpu_auto | {"compile"}
    assert compiled["dynamo"]["unique_graphs"] > 0
    assert compiled["vs_eager_8bit"]["max"] == 0  # the eager backend runs the traced graph op for op
    aot = smoke["phases"]["aot"]["runs"][f"{size}/fp32/auto,aot"]
    assert set(aot["optimisations"].split(",")) == cpu_auto | {"aot"} and aot["aot_compile_s"]


@pytest.mark.slow
def test_copies_and_side_by_side(smoke: dict) -> None:
    size = next(iter(smoke["sizes"]))
    copies = smoke["phases"]["copies"]["runs"][size]
    assert set(copies) == {"upload_plain_ms", "upload_pinned_uint8_ms", "download_plain_ms", "download_device_uint8_ms"}
    side = smoke["phases"]["side-by-side"]["runs"][f"{size}/fp32"]
    assert side["none"]["speedup_vs_none"] == 1.0 and side["none,channels-last"]["s_per_frame"] > 0


@pytest.mark.slow
def test_drift_and_job(smoke: dict) -> None:
    drift = smoke["phases"]["drift"]["runs"]
    bf16 = drift["bf16"]["vs_fp32_8bit"]
    assert len(bf16["max_per_frame"]) == len(bf16["mean_per_frame"]) == drift["bf16"]["frames"]
    assert drift["raft-bf16"]["epe_mean_px"] >= 0
    job = smoke["phases"]["job"]["runs"]["job"]
    assert job["verified"] and job["frames"] == 6 and job["model_s"] > 0


@pytest.mark.slow
def test_report_renders(smoke: dict) -> None:
    for text in (smoke["_stdout"], smoke["_block"]):
        assert "| eager | fp32 |" in text and "Per component" in text and "vs strict fp32" in text


def test_the_docs_block_is_rewritten_between_its_markers(tmp_path: Path) -> None:
    from bench import gpu

    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert page.count(gpu.BEGIN) == 1 and page.count(gpu.END) == 1 and page.index(gpu.BEGIN) < page.index(gpu.END)
    copy = tmp_path / "performance.md"
    copy.write_text(f"# x\n\n{gpu.BEGIN}\nold\n{gpu.END}\n\nrest\n", encoding="utf-8")
    assert gpu.update_docs("new table", copy)
    assert copy.read_text(encoding="utf-8") == f"# x\n\n{gpu.BEGIN}\nnew table\n{gpu.END}\n\nrest\n"
    (tmp_path / "plain.md").write_text("no block\n", encoding="utf-8")
    assert not gpu.update_docs("x", tmp_path / "plain.md")


def test_the_device_command_in_the_docs_matches_the_script() -> None:
    from bench import gpu

    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    for line in ("diffusers==0.42.1 av==18.1.0 scenedetect==0.7.2 platformdirs==4.14.9",
                 "python3 bench/gpu.py --budget 330 --out $OUT"):
        assert line in page and line in gpu.__doc__, line
    assert "/.carry/" in (ROOT / ".gitignore").read_text() and ".carry" in (ROOT / ".dockerignore").read_text()

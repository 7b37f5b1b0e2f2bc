"""Where the golden fixture is, and the one part of it that is made here rather than stored.

The fixture (tests/fixtures/stream-diffvsr-tiny, see its README.md) is in the repository except
its RAFT weights: 21 MB of random numbers that torchvision makes byte for byte again from a seed.
``fixture_dir()`` writes them on first use (about a second), checks them against the SHA-256 in
the fixture's manifest and returns the folder. The file is ignored by git.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "stream-diffvsr-tiny"
RAFT_FILE = "raft_large.safetensors"
RAFT_SEED = 0


class FixtureError(RuntimeError):
    """The fixture is missing or its regenerated part does not match the recording."""


def fixture_dir() -> Path:
    """The fixture folder, with its RAFT weights made (once) and checked."""
    if not (FIXTURE_DIR / "manifest.json").is_file():
        raise FixtureError(f"The golden fixture is missing at {FIXTURE_DIR}: it is part of the repository; "
                           "check out the whole tree (git lfs is not used).")
    raft = FIXTURE_DIR / RAFT_FILE
    expected = json.loads((FIXTURE_DIR / "manifest.json").read_text())["files"][RAFT_FILE]["sha256"]
    if not raft.is_file() or _sha256(raft) != expected:
        _make_raft_weights(raft)
        found = _sha256(raft)
        if found != expected:
            raft.unlink()
            raise FixtureError(
                f"The RAFT weights made from seed {RAFT_SEED} have SHA-256 {found}, not the recorded {expected}: "
                "this torch/torchvision makes different random weights than the ones the fixture was recorded with "
                "(torch 2.14.1, torchvision 0.29.1). Use the pinned versions (requirements-app.txt).")
    return FIXTURE_DIR


def _make_raft_weights(dest: Path) -> None:
    """torchvision's RAFT large with random weights, made right after ``torch.manual_seed(0)``,
    saved as safetensors: exactly how the fixture's weights were made (FIXTURE README, section RAFT)."""
    import torch
    from safetensors.torch import save_file
    from torchvision.models.optical_flow import raft_large

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(RAFT_SEED)
        model = raft_large(weights=None, progress=False)
    finally:
        torch.random.set_rng_state(state)
    fd, name = tempfile.mkstemp(prefix=".raft-", suffix=".safetensors", dir=dest.parent)
    os.close(fd)
    try:
        save_file(model.state_dict(), name)
        os.replace(name, dest)
    finally:
        Path(name).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

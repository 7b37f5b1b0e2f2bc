"""Download every weight file a Stream-DiffVSR job needs into the caches, once, and prove it loads.

Used by the Dockerfile when it is built with ``--build-arg BAKE_WEIGHTS=1`` (the image then runs
without reaching the network), and usable by hand to warm a cache before going offline::

    python deploy/fetch_weights.py                              # Jamichsu/Stream-DiffVSR + RAFT large
    python deploy/fetch_weights.py --model-id ORG/NAME          # another checkpoint in the same layout

It goes through the project's own loaders, so it fetches exactly the files a job reads, into the
caches a job looks in, and fails the same way a job would:

- the checkpoint via ``vsr.model.loading.load_checkpoint`` (a ``huggingface_hub`` snapshot of the
  unet/controlnet/vae/scheduler/text_encoder/tokenizer files into ``$HF_HOME``, then every component
  loaded on the CPU, so a truncated or mismatched file fails the build, not the first job);
- torchvision's RAFT large weights via ``vsr.model.flow.load_raft`` (into ``$TORCH_HOME/hub/checkpoints``,
  hash checked, loaded into RAFT large), or a local file given with ``--flow-weights``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "Jamichsu/Stream-DiffVSR"


def fetch(model_id: str, flow_weights: Path | None = None) -> Path:
    """Put the checkpoint ``model_id`` and the RAFT weights in the caches; return the checkpoint folder.

    Raises ``vsr.model.errors.ModelLoadError`` (a ``RuntimeError``) naming the id or file and the fix.
    """
    from vsr.model.flow import load_raft
    from vsr.model.loading import load_checkpoint

    folder = load_checkpoint(model_id).folder
    logger.info("checkpoint %s is in %s and loads", model_id, folder)
    load_raft(flow_weights)
    logger.info("RAFT large weights load (%s)", flow_weights or "torchvision default, in the torch hub cache")
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns 0 when everything is cached and loads, 1 otherwise."""
    from vsr.model.errors import ModelLoadError

    parser = argparse.ArgumentParser(description="Download the Stream-DiffVSR and RAFT weights into the caches.")
    parser.add_argument("--model-id", default=DEFAULT_MODEL_ID,
                        help=f"hub id or local folder of the checkpoint (default {DEFAULT_MODEL_ID})")
    parser.add_argument("--flow-weights", type=Path, default=None,
                        help="local RAFT large .pth/.safetensors to check instead of downloading torchvision's")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        fetch(args.model_id, args.flow_weights)
    except ModelLoadError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

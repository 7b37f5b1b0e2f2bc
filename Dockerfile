# syntax=docker/dockerfile:1
# Stream-DiffVSR video upscaler for NVIDIA GPU hosts: the web app on port 8000, and the `vsr` CLI.
#
#   docker build -t stream-diffvsr .
#   docker build --build-arg BAKE_WEIGHTS=1 -t stream-diffvsr:baked .     # weights inside the image
#   docker run --gpus all -p 8000:8000 -v stream-diffvsr-cache:/cache stream-diffvsr
#
# Base: python:3.11-slim-bookworm plus the CUDA wheels from PyPI, not an nvidia/cuda image. The pinned
# torch 2.14.1 wheel is built for CUDA 13.0 with kernels for sm_75 to sm_120 (Turing, Ampere, Ada,
# Hopper, Blackwell) and brings its own CUDA runtime, cuBLAS, cuDNN and NCCL as nvidia-* wheels. An
# nvidia/cuda runtime base would add a second, unused copy of those libraries (gigabytes) and a CUDA
# version that can disagree with torch's. The container needs only the host's driver, which the NVIDIA
# Container Toolkit mounts in at `docker run --gpus ...`; CUDA 13 needs driver 580 or newer.
# No system ffmpeg: PyAV's wheel carries its own FFmpeg libraries.

############################ builder: the virtual environment ############################
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir pip==26.3
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Runtime dependencies from requirements-app.txt only (its own layer: code changes do not reinstall torch).
COPY requirements-app.txt ./
RUN pip install --no-cache-dir -r requirements-app.txt
# The cluster extra (Ray, requirements-cluster.txt): the same image is a Ray head or a Ray GPU worker
# (`ray start --head` / `ray start --address`), and the app in front of them (docs/cluster.md).
COPY requirements-cluster.txt ./
RUN pip install --no-cache-dir -r requirements-cluster.txt

# The project itself (packages vsr and media, the `vsr` command), built with a pinned setuptools.
COPY deploy/build-constraints.txt deploy/
COPY pyproject.toml README.md ./
COPY vsr ./vsr
COPY media ./media
RUN pip install --no-cache-dir --no-deps --build-constraint deploy/build-constraints.txt .

############################ weights: optional, baked at build time ############################
FROM builder AS weights

# BAKE_WEIGHTS=1 downloads the checkpoint and the RAFT weights into /cache (through the app's own
# loaders, which also check that they load), and the runtime stage copies /cache; the default (0)
# leaves /cache empty and the app downloads into the volume on first use.
ARG BAKE_WEIGHTS=0
ARG MODEL_ID=Jamichsu/Stream-DiffVSR
ENV HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch
COPY deploy/fetch_weights.py deploy/
RUN mkdir -p /cache/huggingface /cache/torch /cache/stream-diffvsr \
    && if [ "$BAKE_WEIGHTS" = "1" ]; then \
        python deploy/fetch_weights.py --model-id "$MODEL_ID"; \
    elif [ "$BAKE_WEIGHTS" != "0" ]; then \
        echo "BAKE_WEIGHTS must be 0 or 1, not '$BAKE_WEIGHTS'" >&2; exit 1; \
    fi

############################ runtime ############################
# The same base as the builder: /opt/venv/bin/python is a link to this image's /usr/local/bin/python3.11.
FROM python:3.11-slim-bookworm AS runtime

# libgl1 and libglib2.0-0: cv2 (opencv-python, a dependency of scenedetect's scene-cut detection) links
# libGL and GLib at import time. tini: PID 1 that forwards signals (Ctrl-C, docker stop) to Python.
# Versions are not pinned: Debian security updates replace them in the archive, so a pinned build breaks.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 tini \
    && rm -rf /var/lib/apt/lists/*

# Non-root user app (uid 1000, like a Hugging Face Space); /data is the working folder for mounted videos.
RUN useradd --create-home --uid 1000 --shell /bin/bash app \
    && mkdir -p /data/outputs \
    && chown -R app:app /data

COPY --from=builder /opt/venv /opt/venv
COPY --from=weights --chown=app:app /cache /cache
WORKDIR /app
COPY app.py ./
COPY deploy/healthcheck.py deploy/

ARG MODEL_ID=Jamichsu/Stream-DiffVSR
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=8000 \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    STREAM_DIFFVSR_CACHE_DIR=/cache/stream-diffvsr \
    STREAM_DIFFVSR_MODEL_ID=${MODEL_ID} \
    STREAM_DIFFVSR_OUTPUT_DIR=/data/outputs \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX=2: glibc's per-thread malloc arenas made a long-running server's RSS grow about
# 1 MB per job; with two arenas it stays flat (bench/soak.py, docs/performance.md).

# The weights cache: mount a named volume here so the weights download once (a named volume starts
# as a copy of the image's /cache, baked weights included; a bind mount hides them).
VOLUME ["/cache"]

USER 1000:1000
EXPOSE 8000

# Gradio answers /config as soon as it serves requests; the start period covers the first model load.
# sh -c so that the port follows GRADIO_SERVER_PORT when `docker run -e` changes it.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["sh", "-c", "python /app/deploy/healthcheck.py http://127.0.0.1:${GRADIO_SERVER_PORT}/config --timeout 8"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "app.py"]

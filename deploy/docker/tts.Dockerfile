# syntax=docker/dockerfile:1
# Role "tts": Chatterbox in an environment of its own. chatterbox-tts 0.1.7 pins torch 2.6,
# torchaudio 2.6, transformers 5.2 and numpy < 2, which cannot share the models image
# (torch 2.13): the tts actor only needs NATS to join (plugins/tts/scripts/chatterbox-env.sh
# is the same recipe outside containers).
# Build from the repository root:  docker build -f deploy/docker/tts.Dockerfile -t osiris-tts .
# torch 2.6 from PyPI is a CUDA 12 build that brings its own CUDA libraries.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
ARG CHATTERBOX_VERSION=0.1.7

# --- build ------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build
ARG CHATTERBOX_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY osiris_core ./osiris_core
COPY plugins/tts ./plugins/tts
# chatterbox's pins decide torch/transformers/numpy; osiris and osiris-tts need none of them
RUN python3 -m venv /opt/osiris \
 && /opt/osiris/bin/pip install "chatterbox-tts==${CHATTERBOX_VERSION}" . ./plugins/tts \
 && /opt/osiris/bin/pip check

# --- run --------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-log-init --uid 10001 --user-group --create-home \
      --home-dir /var/lib/osiris osiris
COPY --from=build /opt/osiris /opt/osiris
COPY deploy/config/tts.toml /etc/osiris/osiris.toml
ENV PATH=/opt/osiris/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/models/hf-cache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/osiris
HEALTHCHECK --interval=30s --timeout=20s --start-period=180s --retries=3 \
  CMD ["osiris", "request", "-c", "/etc/osiris/osiris.toml", "--timeout", "10", "$SRV.PING.tts"]
ENTRYPOINT ["osiris"]
CMD ["run", "-c", "/etc/osiris/osiris.toml", "--only", "tts"]

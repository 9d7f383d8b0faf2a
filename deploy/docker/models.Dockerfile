# syntax=docker/dockerfile:1
# Role "models": hermes (transformers + optimum + gptqmodel for GPTQ), phi3
# (onnxruntime-genai-cuda), the trainer (QLoRA, bitsandbytes) and the gpu supervisor (NVML).
# Build from the repository root:  docker build -f deploy/docker/models.Dockerfile -t osiris-models .
# torch 2.13 and onnxruntime-gpu 1.31 from PyPI are CUDA 13 builds: the base is CUDA 13 with
# cuDNN 9 (onnxruntime's CUDA provider loads both from the system). Python 3.12 is Ubuntu's.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04

# --- build ------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# a compiler and headers only for sdists that build an extension (gptqmodel ships none as wheel)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY osiris_core ./osiris_core
COPY plugins/hermes ./plugins/hermes
COPY plugins/phi3 ./plugins/phi3
COPY plugins/gpu ./plugins/gpu
COPY plugins/models ./plugins/models
COPY plugins/trainer ./plugins/trainer
# osiris-phi3 and osiris-models declare the CPU onnxruntime / onnxruntime-genai; on a GPU host
# the CUDA builds replace them (same import names: both must never be installed together).
# pip check would name exactly that swap, so the build checks the CUDA provider instead.
RUN python3 -m venv /opt/osiris \
 && /opt/osiris/bin/pip install . "./plugins/hermes[gpu]" "./plugins/phi3[gpu]" ./plugins/gpu \
      ./plugins/models "./plugins/trainer[gpu]" \
 && /opt/osiris/bin/pip uninstall -y onnxruntime onnxruntime-genai \
 && /opt/osiris/bin/pip install --no-deps onnxruntime-gpu==1.31.1 onnxruntime-genai-cuda==0.18.0 \
 && /opt/osiris/bin/python -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()"

# --- run --------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-log-init --uid 10001 --user-group --create-home \
      --home-dir /var/lib/osiris osiris
COPY --from=build /opt/osiris /opt/osiris
COPY deploy/config/models.toml /etc/osiris/osiris.toml
# nothing downloads at run time: checkpoints are mounted at /models (or a hub cache in HF_HOME)
ENV PATH=/opt/osiris/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/models/hf-cache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /var/lib/osiris
VOLUME ["/var/lib/osiris"]
# the actors answer their control subject once they have joined NATS (status also while paused)
HEALTHCHECK --interval=30s --timeout=20s --start-period=300s --retries=3 \
  CMD ["osiris", "request", "-c", "/etc/osiris/osiris.toml", "--timeout", "10", "$SRV.PING.phi3"]
ENTRYPOINT ["osiris"]
CMD ["run", "-c", "/etc/osiris/osiris.toml", "--only", "hermes,phi3,trainer,gpu"]

# syntax=docker/dockerfile:1
# Role "core": the gateway and the CPU actors (orchestrator, feedback, sim, dgm, bridge).
# Build from the repository root:  docker build -f deploy/docker/core.Dockerfile -t osiris-core .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: wheels of this repository's packages into a venv (no dev/test extras) ---------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY osiris_core ./osiris_core
COPY gateway ./gateway
COPY plugins/orchestrator ./plugins/orchestrator
COPY plugins/feedback ./plugins/feedback
COPY plugins/sim ./plugins/sim
COPY plugins/dgm ./plugins/dgm
COPY plugins/bridge ./plugins/bridge
# the same distributions scripts/install.sh installs for these plugins, not editable
RUN python -m venv /opt/osiris \
 && /opt/osiris/bin/pip install . ./gateway "./plugins/orchestrator[redis]" ./plugins/feedback \
      "./plugins/sim[redis]" ./plugins/dgm ./plugins/bridge \
 && /opt/osiris/bin/pip check

# --- run --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
RUN useradd --system --no-log-init --uid 10001 --user-group --create-home \
      --home-dir /var/lib/osiris osiris
COPY --from=build /opt/osiris /opt/osiris
COPY deploy/config/core.toml /etc/osiris/osiris.toml
ENV PATH=/opt/osiris/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /var/lib/osiris
VOLUME ["/var/lib/osiris"]
EXPOSE 8000
# /health answers 200 with ok|partial_error|error once the gateway is up (it reports the
# models' state; it does not fail while they load)
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["osiris"]
CMD ["run", "-c", "/etc/osiris/osiris.toml"]

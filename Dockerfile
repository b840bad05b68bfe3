# syntax=docker/dockerfile:1
# One image for every notifsvc stage; the command picks the stage:
#   notifsvc receiver | notifsvc router | notifsvc notificator --channel NAME
#   notifsvc migrate  | notifsvc topics create
# Only the runtime package is installed: the dev extra (embedded broker and PostgreSQL
# binaries) and the test/load extras stay out of the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A regular (non-editable) install of the package and its runtime dependencies only.
RUN pip install --upgrade pip \
    && pip install . \
    && pip uninstall --yes pip \
    && notifsvc --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="notifsvc" \
      org.opencontainers.image.description="At-least-once notification pipeline" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 notifsvc \
    && useradd --system --uid 10001 --gid notifsvc --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin notifsvc
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/notifsvc/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFSVC_HTTP_HOST=0.0.0.0 \
    NOTIFSVC_HTTP_PORT=8090
WORKDIR /tmp
# Numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# 8090: receiver API, /healthz, /readyz, /metrics; 9100: /metrics of router and notificators
# (NOTIFSVC_METRICS_PORT).
EXPOSE 8090 9100
# receiver: GET /healthz on NOTIFSVC_HTTP_PORT; router/notificator: GET /metrics on
# NOTIFSVC_METRICS_PORT when it is set; other commands (migrate, topics): always healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/opt/notifsvc/healthcheck.py"]
CMD ["notifsvc", "receiver"]

# One image for both halves of brain_storm's saver:
#
#   docker build -t brain-storm:0.1.0 .
#   docker run brain-storm:0.1.0                          # the saver (run-saver)
#   docker run brain-storm:0.1.0 python -m brain_storm.operator   # the operator
#
# The first stage builds wheels for the project and every dependency; the
# second installs them from a bind mount, so neither the wheels, nor pip's
# cache, nor any build tool ends up in a layer of the final image.
# tests/test_image.py lints this file with hadolint and performs the same
# install steps into a fresh virtual environment.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY brain_storm ./brain_storm
# The project's wheel and its extras' wheels, all in /wheels.
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels \
        ".[postgresql,mongodb,operator]"

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="brain-storm" \
      org.opencontainers.image.description="brain_storm saver (RabbitMQ to SQLite, PostgreSQL or MongoDB) and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Offline install from the first stage's wheels only: what was built and
# tested is what runs.  The bind mount keeps the wheels out of the layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        "brain-storm[postgresql,mongodb,operator]==${VERSION}"
# 65532: the numeric non-root user that the operator's pod templates and the
# Helm chart run as; it owns nothing in the image.
USER 65532:65532
WORKDIR /tmp
# The saver's metrics, /healthz and /readyz (run-saver --metrics-port).
EXPOSE 9466
CMD ["python", "-m", "brain_storm.saver", "run-saver"]

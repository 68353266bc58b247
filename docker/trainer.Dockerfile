# The trainer (and the one-shot `veto bootstrap`): the shared package + torch 2.13.0 CPU.
# Build from the repository root: docker build -f docker/trainer.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# torch first, from the CPU index: the default index would pull the CUDA build (gigabytes).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY veto ./veto
COPY trainer ./trainer
RUN pip install ".[trainer]"

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin veto \
    && mkdir -p /artifacts && chown veto /artifacts
USER veto

ENV VETO_ARTIFACTS_DIR=/artifacts \
    VETO_METRICS_PORT=9100
EXPOSE 9100
# Healthy while the metrics endpoint answers (the training loop serves it).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=2)"]
CMD ["veto", "train", "--metrics-port", "9100"]

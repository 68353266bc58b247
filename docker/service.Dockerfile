# The HTTP service: the shared package + FastAPI, no torch (the service never imports it).
# Build from the repository root: docker build -f docker/service.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the service needs: the shared package and the service itself.
COPY pyproject.toml README.md ./
COPY veto ./veto
COPY service ./service
RUN pip install ".[service]" \
    && python -c "import service, veto; import importlib.util as u; assert u.find_spec('torch') is None"

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin veto
USER veto

# One uvicorn worker per container: scale with replicas (docker compose --scale service=N).
ENV VETO_HOST=0.0.0.0 \
    VETO_PORT=8000 \
    VETO_ARTIFACTS_DIR=/artifacts
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["veto", "serve", "--port", "8000"]

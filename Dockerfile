# `stages serve` in a container: the trained model over HTTP on port 8080.
# Build it in the project after `dvc repro` (or `dvc pull`), so that the model, its encoding
# and the schema are there to copy:
#   docker build -t adult-model . && docker run -p 8080:8080 -e SERVE_TOKEN=... adult-model
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=numpy \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app

# The exact versions of the lock file, then the project itself (its serve extra is in the
# lock), before the model: a new model rebuilds only the last layers.
COPY requirements.lock pyproject.toml README.md ./
COPY stages/ stages/
RUN pip install --no-cache-dir -r requirements.lock \
    && pip install --no-cache-dir --no-deps ".[serve]"

# What the server loads: params, the schema rows are checked against, the encoding and the
# network on encoded rows, and the train profile drift is measured against.
COPY params.yaml ./
COPY schemas/ schemas/
COPY data/prepared/encoding.json data/prepared/
COPY models/network.keras models/profile.json models/

RUN useradd --create-home --uid 1000 serve
USER serve

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=4)"]
# The exec form: SIGTERM from `docker stop` reaches the server, which lets the requests in
# flight finish before it exits.
CMD ["python", "-m", "stages", "serve", "--host", "0.0.0.0", "--port", "8080"]

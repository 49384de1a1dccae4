# crawler as a container: `docker build -t crawler .`, then see docker-compose.yml.
#
# Stage 1 builds wheels for crawler and all its dependencies (from pyproject.toml);
# stage 2 installs only those wheels, offline, into a venv at /opt/venv. A venv rather than
# the system site-packages so the same file works on the official python:3.11-slim image
# and on a plain Debian base whose system pip is "externally managed" (PEP 668).
# Plain Dockerfile syntax (no RUN --mount): builds with BuildKit, the legacy builder and
# podman/buildah alike.
#
# Package index: PyPI by default. Behind a mirror or an intercepting proxy, pass
#   --build-arg PIP_INDEX_URL=https://mirror/simple
#   --build-arg PIP_CERT=<CA bundle as seen inside the build, e.g. bind-mounted with
#                         `podman build -v /host/ca.pem:/etc/ssl/certs/ca-certificates.crt:ro`>
# (unset by default; only the build stage sees them, they do not reach the image).

FROM python:3.11-slim AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/build-venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY crawler ./crawler
# `pip wheel .` builds crawler and a wheel for each dependency, resolved within the version
# ranges that pyproject.toml declares. --use-pep517: a dependency published as a setup.py
# sdist only (surt) is built in an isolated environment with a current setuptools; the
# legacy `setup.py bdist_wheel` path fails here for want of the `wheel` package.
RUN /opt/build-venv/bin/python -m pip wheel --use-pep517 --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRAWLER_SERVICE__LISTEN=0.0.0.0:8080 \
    CRAWLER_LOG__FORMAT=json
# Offline install: only the wheels built above (--no-index), so this stage needs no network.
# (Their COPY layer stays in the image, about 2.5 MB; a RUN --mount bind would avoid that
# but needs BuildKit.)
COPY --from=build /wheels /wheels
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --no-index --find-links=/wheels \
        --disable-pip-version-check crawler \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin crawler \
    && mkdir -p /data \
    && chown crawler:crawler /data
# Reference copy of every setting with its default (the defaults themselves are built in).
COPY config/default.toml /etc/crawler/default.toml
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# No curl in the image: the venv's python does the probe (non-2xx or no answer = unhealthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["crawler"]
CMD ["serve", "--data-dir", "/data"]

# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 crawler \
    && mkdir /data && chown crawler:crawler /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/default.toml /etc/crawler/default.toml
USER crawler
WORKDIR /data
VOLUME ["/data"]
ENV CRAWLER_LOG__FORMAT=json
STOPSIGNAL SIGTERM
ENTRYPOINT ["crawler"]
CMD ["run", "--data-dir", "/data"]

# syntax=docker/dockerfile:1
# Multi-stage: build the locked virtualenv with uv, then copy it into a slim, non-root runtime.
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
# the residents' privacy notice is served from it (/app/privacy)
COPY docs/privacy.md ./docs/privacy.md
COPY migrations ./migrations
COPY alembic.ini ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --home /srv hereabouts
WORKDIR /srv
COPY --from=build /src /srv
ENV PATH="/srv/.venv/bin:$PATH" \
    HEREABOUTS_ENVIRONMENT=production \
    HEREABOUTS_HOST=0.0.0.0 \
    HEREABOUTS_DATA_DIR=/srv/data
USER hereabouts
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status==200 else 1)"
CMD ["hereabouts", "serve", "--no-migrate"]

# syntax=docker/dockerfile:1
# The api image: installs only the jobs-api workspace member (and jobs-common) from uv.lock.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv
COPY pyproject.toml uv.lock ./
# Every member's manifest is needed to read the workspace lock; only the api's code is installed.
COPY services/worker/pyproject.toml services/worker/pyproject.toml
COPY libs/proto libs/proto
COPY libs/common libs/common
COPY services/api services/api
RUN uv sync --frozen --no-dev --no-editable --package jobs-api

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 jobs
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 GRPC_PORT=50051
USER jobs
EXPOSE 50051 9100
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-m", "jobs_api.healthcheck"]
CMD ["jobs-api"]

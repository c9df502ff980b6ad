# One image for the API, the migrations and CPU workers, installed from the committed lock
# (uv.lock). For GPU workers build with --build-arg JAX_EXTRA=cuda12 (the lock's CUDA 12
# build of jaxlib).
FROM python:3.11-slim
ARG JAX_EXTRA=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY scripts/uv-bootstrap.txt ./scripts/
RUN pip install --no-cache-dir --require-hashes --no-deps -r scripts/uv-bootstrap.txt
COPY pyproject.toml uv.lock README.md ./
COPY acprop_tuner ./acprop_tuner
COPY optimizer ./optimizer
COPY service ./service
COPY worker ./worker
COPY migrations ./migrations
RUN uv sync --locked --no-editable --no-cache ${JAX_EXTRA:+--extra $JAX_EXTRA}
RUN useradd --create-home tuner
USER tuner
EXPOSE 8000
CMD ["acprop-tuner", "serve", "--host", "0.0.0.0", "--port", "8000"]

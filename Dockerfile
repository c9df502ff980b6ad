# One image for the API, the migrations and CPU workers. For GPU workers build with
# --build-arg JAX_EXTRA=cuda12 (pulls the CUDA build of jaxlib).
FROM python:3.11-slim
ARG JAX_EXTRA=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY acprop_tuner ./acprop_tuner
COPY optimizer ./optimizer
COPY service ./service
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
 && if [ -n "$JAX_EXTRA" ]; then pip install --no-cache-dir "jax[$JAX_EXTRA]>=0.10.2,<0.11"; fi
RUN useradd --create-home tuner
USER tuner
EXPOSE 8000
CMD ["acprop-tuner", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The forecast service. Build from the repository root:
#   docker build -t demand-assets-serve .
#   docker run -p 8000:8000 -e DEMAND_SERVICE_TOKEN=change-me -v $PWD/.demand_home:/data demand-assets-serve
# The entrypoint (demand_assets/serving/entrypoint.py) listens on 0.0.0.0 only with a token, or
# with DEMAND_SERVICE_ALLOW_PUBLIC=1 (unauthenticated, with a warning); otherwise on 127.0.0.1
# only, which the published port cannot reach. See docs/serving.md, "Authentication" and "Docker".
# It reads the models from MLflow and the forecasts from Delta under DEMAND_HOME (mounted at
# /data here); point MLFLOW_TRACKING_URI and DEMAND_DELTA_URI elsewhere to use shared stores.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEMAND_HOME=/data PIP_NO_CACHE_DIR=1
WORKDIR /app

# libgomp: OpenMP for LightGBM (the registered daily models may be LightGBM pyfuncs).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

# The CPU wheel of torch first, so pip does not pull the CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY demand_assets ./demand_assets
COPY contracts ./contracts
COPY resources ./resources
RUN pip install .

RUN useradd --create-home service && mkdir -p /data && chown service /data
USER service
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD ["python", "-m", "demand_assets.serving", "--port", "8000"]

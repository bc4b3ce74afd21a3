FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY mappings ./mappings
COPY workers ./workers
RUN pip install --no-cache-dir ".[postgres]" && useradd --system --uid 10001 hub
USER hub
EXPOSE 8000
CMD ["hub", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"]

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY journeys journeys
COPY projections projections
COPY api api
COPY consumers consumers
RUN pip install --no-cache-dir . && mkdir /keys && chown nobody /keys && chmod 700 /keys
USER nobody
EXPOSE 8000
CMD ["journeys", "serve", "--host", "0.0.0.0"]

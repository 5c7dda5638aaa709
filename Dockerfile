# The rinha daemon: one image, run once per instance (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from (pyproject maps cli/ and daemon/ into the rinha namespace).
COPY pyproject.toml README.md ./
COPY rinha ./rinha
COPY cli ./cli
COPY daemon ./daemon
COPY profiles ./profiles
# The README's install, non-editable: the image keeps the installed package, not the sources.
# RINHA_EXTRAS="[postgres]" adds the PostgreSQL driver (docker-compose.postgres.yml builds so).
ARG RINHA_EXTRAS=""
RUN pip install ".${RINHA_EXTRAS}" \
 && rm -rf /src \
 && mkdir -p /run/rinha /var/lib/rinha
WORKDIR /var/lib/rinha

# Every `rinha serve` option comes from its RINHA_* variable; compose sets the per-instance ones.
ENV RINHA_LISTEN=unix:/run/rinha/api.sock \
    RINHA_DB=/var/lib/rinha/rinha.db \
    RINHA_DEFAULT_URL=http://payment-processor-default:8080 \
    RINHA_FALLBACK_URL=http://payment-processor-fallback:8080 \
    RINHA_ROLES=api,dispatch,health \
    RINHA_LOG_LEVEL=info

STOPSIGNAL SIGTERM
# The schema in a short process of its own, so the daemon never loads the migration code.
CMD ["sh", "-c", "rinha migrate && exec rinha serve"]

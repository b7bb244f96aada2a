# Gatehouse as a container image: gunicorn's gevent worker on port 8000, as a user that is not root; the instance
# folder (SQLite database, secret key, recordings) is a volume; settings come from the environment (README.md).
#
#   docker build -t gatehouse .
#   docker run -p 8000:8000 -v gatehouse:/var/lib/gatehouse gatehouse      (the first admin's password is logged)
#
# podman builds and runs it the same way; docs/container.md says how, and how .ci/image checks it.
ARG BASE=python:3.11-slim-bookworm
ARG ASSETS_BASE=node:20-bookworm-slim

# The front-end files (xterm.js, htmx, the player), made by the Makefile's own rule.
FROM ${ASSETS_BASE} AS assets
RUN { command -v npm && command -v make; } >/dev/null || { apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm make ca-certificates \
    && rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY package.json package-lock.json Makefile ./
RUN make app/static/vendor/.installed

FROM ${BASE}
# An official Python image has Python and venv; a plain Debian base gets Debian's.
RUN python3 -c "import ensurepip, venv" 2>/dev/null || { apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*; }
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse \
    && install -d -m 0700 -o gatehouse -g gatehouse /var/lib/gatehouse
WORKDIR /opt/gatehouse
COPY requirements.txt ./
RUN python3 -m venv venv && venv/bin/pip install -q --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY --from=assets /src/app/static/vendor app/static/vendor
COPY config.py config_values.py gunicorn.conf.py wsgi.py ./
COPY migrations migrations
COPY app app
ENV PATH=/opt/gatehouse/venv/bin:$PATH \
    GATEHOUSE_INSTANCE=/var/lib/gatehouse \
    GATEHOUSE_BIND=0.0.0.0:8000 \
    PYTHONUNBUFFERED=1
USER gatehouse
VOLUME /var/lib/gatehouse
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['GATEHOUSE_BIND'].rpartition(':')[2] + '/healthz', timeout=4)"]
# The schema first (idempotent), then the server; the first start creates the admin and logs its password once.
CMD ["sh", "-c", "flask --app app db upgrade && exec gunicorn -c gunicorn.conf.py wsgi:app"]

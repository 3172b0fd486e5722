# slack-assistant-bot: Socket Mode, or HTTP on $PORT (see README.md).
#
# Two stages. The build stage installs the bot and its dependencies into a virtual environment, building
# any wheel a dependency lacks for this platform; the final stage copies that environment alone, so no
# sources, build tools or pip caches reach the image.
FROM python:3.12-slim AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
# The wheel carries migrations/ too: the final stage needs nothing from the source tree.
RUN pip install --no-cache-dir .

FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PORT=3000

RUN groupadd --system --gid 10001 bot \
    && useradd --system --no-log-init --uid 10001 --gid bot --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown bot:bot /app/data
COPY --from=build /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# Default database: SQLite at ./data/bot.sqlite3, i.e. /app/data/bot.sqlite3.
VOLUME ["/app/data"]

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

CMD ["python", "-m", "bot", "run"]

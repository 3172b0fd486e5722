# slack-assistant-bot: Socket Mode, or HTTP on $PORT (see README.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=3000

WORKDIR /app

# The source stays in /app as well as being installed: `python -m bot` runs from /app,
# and migrations/ is read from there. No build tools or apt packages are needed.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info \
    && groupadd --system --gid 10001 bot \
    && useradd --system --no-log-init --uid 10001 --gid bot --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data \
    && chown bot:bot /app/data

USER 10001:10001

# Default database: SQLite at ./data/bot.sqlite3, i.e. /app/data/bot.sqlite3.
VOLUME ["/app/data"]

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

CMD ["python", "-m", "bot", "run"]

# aimbot: one container per bot screen name (see docker-compose.yml).
#
# Build stage: install the pinned runtime dependencies into /install. Every dependency ships
# wheels for this platform, so no compiler is needed, and nothing from this stage except the
# installed packages reaches the final image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --prefix=/install -r /tmp/requirements.txt

# Runtime stage: the interpreter, the dependencies and the code; runs as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIMBOT_NO_BOOTSTRAP=1 \
    HEALTH_HOST=0.0.0.0 \
    HEALTH_PORT=8080 \
    DATA_DIR=/app/data \
    LOG_FILE=/app/logs/aimbot.log
COPY --from=build /install /usr/local
# A fixed numeric id, so that bind-mounted host directories can be chowned to match (10001).
RUN groupadd --system --gid 10001 aimbot \
    && useradd --system --no-log-init --uid 10001 --gid aimbot \
       --home-dir /app --shell /usr/sbin/nologin aimbot \
    && mkdir -p /app/data /app/logs \
    && chown aimbot:aimbot /app/data /app/logs
WORKDIR /app
# The code stays owned by root: the bot can write only its data and its logs.
COPY main.py requirements.txt ./
COPY aimbot ./aimbot
# Numeric, so that Kubernetes-style runAsNonRoot checks can verify it: the aimbot user.
USER 10001:10001
VOLUME ["/app/data", "/app/logs"]
EXPOSE 8080
# Healthy = signed on to AIM and Dify's circuit closed (GET /healthz answers 200). Standard
# library only, so the image needs no curl. With HEALTH_PORT=0 the endpoint is off: nothing to ask.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HEALTH_PORT') or '8080'; port == '0' or urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4); sys.exit(0)"]
# Exec form: python is PID 1 and receives SIGTERM itself, signs off and exits within
# SHUTDOWN_GRACE (keep `docker stop -t` / compose stop_grace_period above it).
STOPSIGNAL SIGTERM
CMD ["python", "main.py"]

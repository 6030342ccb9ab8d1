# ConvServe server image.
#
#   docker build -t convserve .
#   docker run --rm -p 50051:50051 convserve [server flags...]
#
# Both stages install packages through scripts/setup.sh (profiles build and
# runtime), and the build stage builds with scripts/run_server.sh itself, so
# the image, the README and a bare-metal install use the same steps.

# --- Build: the same script as a bare-metal install, without the exec.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN bash scripts/run_server.sh --build-only

# --- Run: shared libraries only, non-root.
FROM debian:bookworm-slim
COPY scripts/setup.sh /tmp/setup.sh
RUN bash /tmp/setup.sh runtime && rm -rf /var/lib/apt/lists/* /tmp/setup.sh \
  && useradd --system --no-create-home --shell /usr/sbin/nologin --uid 10001 convserve
COPY --from=build /src/build-server/server/convserve_server /src/build-server/client/convctl \
  /usr/local/bin/
USER convserve
# 9090: Prometheus metrics, served only when CONVSERVE_METRICS_LISTEN=0.0.0.0:9090
# (or --metrics_listen) is set.
EXPOSE 50051 9090
# The server writes the port it really listens on here (CONVSERVE_PORT_FILE is
# --port_file), so the health check follows --listen / CONVSERVE_LISTEN. With TLS
# (CONVSERVE_TLS_CERT_FILE, ...) convctl's plaintext check cannot use that port: set
# CONVSERVE_HEALTH_LISTEN (e.g. 0.0.0.0:50052), whose bound port the server writes to
# CONVSERVE_HEALTH_PORT_FILE, and the check uses that one instead (the server removes
# the file when there is no health port).
ENV CONVSERVE_PORT_FILE=/tmp/convserve.port \
  CONVSERVE_HEALTH_PORT_FILE=/tmp/convserve.health_port
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["sh", "-c", "port=$(cat /tmp/convserve.health_port 2>/dev/null || cat /tmp/convserve.port) && exec convctl --target=127.0.0.1:$port --timeout_s=3 health"]
# Flags given to `docker run` replace CMD; --listen must then be given again.
ENTRYPOINT ["convserve_server"]
CMD ["--listen=0.0.0.0:50051"]

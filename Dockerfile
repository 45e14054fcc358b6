# syntax=docker/dockerfile:1
#
# Mash: one static-ish binary on a slim Debian runtime.
#
#   docker build -t mash .
#   docker run --rm -p 3000:3000 -v mash-data:/app/data mash            # SQLite in /app/data
#   docker run --rm -p 3000:3000 -e DATABASE_URL=postgres://... mash    # PostgreSQL
#
# The build stage uses BuildKit cache mounts for the cargo registry and the target
# directory, so a rebuild after a source change only recompiles the mash crate itself.
# That needs BuildKit (the default builder since Docker 23); no dummy-main trick, so it
# keeps working whatever files (build.rs, migrations, include_str! assets) the crate gains.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

############################
# Build stage
############################
FROM ${RUST_IMAGE} AS build
WORKDIR /src

# .cargo/config.toml carries SQLX_OFFLINE=true: sqlx macros inside dependencies must never
# try to reach a database at build time. It is copied with the rest of the context
# (.dockerignore keeps target/, data/, .git/ and bench/out/ out).
COPY . .

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    test -f .cargo/config.toml \
 && cargo build --release --locked --bin mash \
 && install -D -m 0755 target/release/mash /out/mash

############################
# Runtime stage
############################
FROM ${RUNTIME_IMAGE} AS runtime

# ca-certificates: outbound TLS (Stripe, OIDC JWKS, SMTP); curl: the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# Fixed, non-root uid/gid so volume ownership is predictable and Kubernetes'
# runAsNonRoot can verify it from the numeric USER.
RUN groupadd --system --gid 10001 mash \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin mash \
 && mkdir -p /app/data \
 && chown -R 10001:10001 /app

COPY --from=build /out/mash /usr/local/bin/mash

WORKDIR /app
# Local state (the default SQLite database /app/data/mash.db, development keys) lives in
# MASH_DATA_DIR; mount a volume on /app/data to keep it.
ENV MASH_DATA_DIR=/app/data \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json

USER 10001:10001
EXPOSE 3000

# /health/ready is 200 only when the database (and Redis, when configured) answer.
# ${PORT:-3000} keeps the check right when PORT is overridden at run time.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT:-3000}/health/ready" || exit 1

# mash handles SIGTERM (docker stop) with a graceful shutdown.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mash"]
CMD ["serve"]

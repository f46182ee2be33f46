# Build stage: compile the release binary (diesel links libpq).
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --bin solopay

# Runtime stage: a slim Debian with libpq and the binary only.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/solopay solopay
COPY --from=build /src/target/release/solopay /usr/local/bin/solopay
USER solopay
# A generated operator token is written here (mount a volume to keep it).
WORKDIR /var/lib/solopay
ENV SOLOPAY_BIND=0.0.0.0:8080 \
    SOLOPAY_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["solopay"]
CMD ["serve"]

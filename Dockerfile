# Build stage: compile the release binary (diesel links libpq, openssl-sys the OpenSSL libpq uses).
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, on placeholder sources: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every change to solopay's own code.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/solopay-bench.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin solopay \
 && rm -rf src

# solopay itself. The sources are touched so that cargo never takes the placeholder build for
# a current one (copied files keep their older modification times).
COPY build.rs build.rs
COPY migrations migrations
COPY src src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin solopay

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

# Builds the `loan` binary and the reference policy, then ships both in a
# slim image. One image serves every role: `loan api`, `loan worker`,
# `loan simulator`, or `loan serve` for all in one process.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --target wasm32-wasip2 --manifest-path plugins/reference/Cargo.toml \
 && cargo build --release --bin loan

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /app loan
WORKDIR /app
COPY --from=build /src/target/release/loan /usr/local/bin/loan
COPY --from=build /src/plugins/reference/target/wasm32-wasip2/release/reference_policy.wasm /app/policies/reference_policy.wasm
COPY settings.ini /app/settings.ini
ENV LOAN_POLICY__PATH=/app/policies/reference_policy.wasm \
    LOAN_HTTP__ADDRESS=0.0.0.0:8080 \
    LOAN_STORE__DATA_DIR=/app/data
RUN mkdir -p /app/data && chown loan /app/data
USER loan
EXPOSE 8080
ENTRYPOINT ["loan"]
CMD ["serve"]

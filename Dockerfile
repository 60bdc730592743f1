# syntax=docker/dockerfile:1
#
# provenance-gate container image.
#
#   docker build -t provenance-gate:0.1.0 .
#
# Build stage: the workspace's locked dependencies, release profile. Debian bookworm, so that
# the binary links against the same glibc as the runtime image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cargo's registry and the target directory are BuildKit caches; the binary is copied out of
# the cache mount so that the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p provenance-gate \
    && install -D -m 0755 target/release/provenance-gate /out/provenance-gate

# Runtime stage: distroless "cc" (glibc, libgcc, CA certificates; no shell, no package
# manager). Not "static": aws-lc-rs, the crypto of rustls and of Sigstore verification, is C
# built against the C library, and a static musl build would need a musl C toolchain and
# musl's slower allocator under tokio's threads.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/provenance-gate /usr/local/bin/provenance-gate
# The distroless "nonroot" user; the chart's securityContext asks for the same UID.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/provenance-gate"]
CMD ["--help"]

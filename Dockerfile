# syntax=docker/dockerfile:1
#
# provenance-gate container image, for linux/amd64 and linux/arm64.
#
#   docker build -t provenance-gate:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REPOSITORY:0.1.0 --push .
#
# .github/workflows/release.yml builds and publishes both platforms as one image index.
#
# Build stage: runs on the build machine's own platform (BUILDPLATFORM) and cross-compiles for
# the target platform (TARGETARCH), so that an arm64 image built on an amd64 runner is compiled
# natively rather than under QEMU emulation (many times slower for a crate graph this size).
# Debian bookworm, so that the binary links against the same glibc as the runtime image.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
WORKDIR /src
# The Rust target and, when it is not the build machine's architecture, Debian's C cross
# toolchain: aws-lc-rs (the crypto of rustls and of Sigstore verification) is C, and the binary
# is linked by the target's gcc. Debian's packages are not version-pinned (DL3008): the rust
# image's bookworm snapshot decides them, as it decides the native gcc.
# hadolint ignore=DL3008
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH' (amd64 or arm64)" >&2; exit 1 ;; \
    esac \
    && echo "$triple" > /rust-target \
    && rustup target add "$triple" \
    && if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
         apt-get update \
         && apt-get install -y --no-install-recommends "gcc-$gnu" "libc6-dev-$TARGETARCH-cross"; \
       fi
# Compiler and linker per target; for the build machine's own architecture these are the
# triplet names of its native gcc.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
COPY . .
# Cargo's registry and the target directory (one per target architecture, so that the two
# platforms of a multi-platform build do not wait on each other's lock) are BuildKit caches;
# the binary is copied out of the cache mount so that the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=provenance-gate-target-$TARGETARCH \
    triple="$(cat /rust-target)" \
    && cargo build --release --locked -p provenance-gate --target "$triple" \
    && install -D -m 0755 "target/$triple/release/provenance-gate" /out/provenance-gate

# Runtime stage, for the target platform: distroless "cc" (glibc, libgcc, CA certificates; no
# shell, no package manager). Not "static": aws-lc-rs is C built against the C library, and a
# static musl build would need a musl C toolchain and musl's slower allocator under tokio's
# threads.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/provenance-gate /usr/local/bin/provenance-gate
# The distroless "nonroot" user; the chart's securityContext asks for the same UID.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/provenance-gate"]
CMD ["--help"]

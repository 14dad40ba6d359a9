# syntax=docker/dockerfile:1
# One image for the runtime (`dyce serve`, the default command) and the controller
# (`dyce control --kubernetes ...`): the binary is the entrypoint. Build and push it yourself:
#   docker build -t REGISTRY/dyce:0.1.0 .
#   docker push REGISTRY/dyce:0.1.0
# The Helm chart (charts/dyce) runs it as user 65532 with a read-only root filesystem.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The caches only speed up rebuilds (BuildKit); the binary is copied out of the cached target/.
# The release profile keeps line tables for local profiling and backtraces (207 MiB); the image
# ships the copy without debug sections (47 MiB) but with its symbol table, so a panic's backtrace
# still names functions (stripping everything would save 6.5 MiB more). Sizes: docs/install.md.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dyce \
    && install -D -m 0755 target/release/dyce /out/dyce \
    && strip --strip-debug /out/dyce

# glibc and libgcc_s, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/dyce /usr/local/bin/dyce
USER 65532:65532
# 8080 data port (OIP v2), 8081 gRPC (KServe v2), 9090 runtime admin port, 9100 controller.
EXPOSE 8080 8081 9090 9100
ENTRYPOINT ["/usr/local/bin/dyce"]
CMD ["serve"]

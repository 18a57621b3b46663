# modgate container image.
#
#   DOCKER_BUILDKIT=1 docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t modgate .
#   docker run -d --name modgate -p 3128:3128 -p 3129:3129 -v modgate-data:/var/lib/modgate modgate
#
# The image runs as the distroless "nonroot" user (uid 65532). The data
# directory (CA, enterprise note key, admin token, Badger cache) is the
# volume /var/lib/modgate; `modgate serve` creates what is missing in it on
# first start. See README.md, section "Docker".
#
# No "# syntax=" line: BuildKit's built-in Dockerfile frontend builds this
# file (RUN --mount needs BuildKit: DOCKER_BUILDKIT=1 with docker 20.10, or
# buildx), so that the two base images are the only images a build needs.
# A syntax line makes BuildKit pull a frontend image from Docker Hub, which
# builders without a registry cannot do.

# ---- build ------------------------------------------------------------------
# The builder runs on the build host's platform and cross-compiles for the
# target platform (docker buildx build --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src

# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG VERSION=devel
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/modgate ./cmd/modgate

# The data directory, owned by the nonroot user and private to it, so that a
# new named volume mounted there starts with that owner and mode. It is
# copied with its parents (COPY --from keeps owner and mode): a COPY of the
# directory itself would copy only its contents, into a new /var/lib/modgate
# of mode 0755.
RUN mkdir -p /out/data/var/lib/modgate && chmod 0700 /out/data/var/lib/modgate && \
    chown 65532:65532 /out/data/var/lib/modgate

# ---- run --------------------------------------------------------------------
# distroless/static: no shell, no package manager; CA roots in
# /etc/ssl/certs (for the upstream's TLS), tzdata, and the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/modgate /modgate
COPY --from=build /out/data/ /
USER 65532:65532

ENV MODGATE_DATA_DIR=/var/lib/modgate \
    MODGATE_LISTEN=0.0.0.0:3128 \
    MODGATE_ADMIN_LISTEN=0.0.0.0:3129
VOLUME /var/lib/modgate
# 3128: HTTPS_PROXY (CONNECT interception) and GOPROXY endpoint.
# 3129: admin listener: /healthz, /readyz, /ca.pem, /verifier.txt, /metrics.
EXPOSE 3128 3129

# The image has no shell or curl: modgate checks itself. `modgate healthcheck`
# asks the admin listener's /readyz (at MODGATE_ADMIN_LISTEN, reached on
# 127.0.0.1 when it listens on 0.0.0.0) and exits 0 on 200, else 1.
# Kubernetes ignores HEALTHCHECK: probe /healthz and /readyz on 3129 there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/modgate", "healthcheck"]

ENTRYPOINT ["/modgate"]
CMD ["serve"]

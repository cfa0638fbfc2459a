# syntax=docker/dockerfile:1
# One image, three commands: projector (the entrypoint), queryapi and replay, all in
# /usr/local/bin. Static binaries (CGO_ENABLED=0) on distroless static, run as the
# image's nonroot user (65532); nothing else is in the image, not even a shell.
#
#   docker build --build-arg VERSION=v1.2.0 --build-arg COMMIT=$(git rev-parse HEAD) -t readside:v1.2.0 .
#   docker run --rm readside:v1.2.0 -version
#   docker run --rm --entrypoint queryapi readside:v1.2.0 -version
#
# deploy/image_test.go runs this file's `go build` line as written (same flags, same
# ldflags) and checks that the binaries are static, run as a non-root user and print
# the version given; keep the build in one RUN line that it can find.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: a change of code alone reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Set by BuildKit for each platform built (docker buildx build --platform linux/arm64,...);
# the Go toolchain cross-compiles on the build platform.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} go build -trimpath -buildvcs=false -ldflags="-s -w -X github.com/readside/readside/internal/version.version=${VERSION} -X github.com/readside/readside/internal/version.commit=${COMMIT}" -o /out/ ./cmd/projector ./cmd/queryapi ./cmd/replay

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="readside" \
      org.opencontainers.image.description="Read side for CQRS systems: projector, query API and replay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# The admin addresses (/metrics, /livez, /readyz) of the projector and the query API,
# and the query API's public port, as deploy/kubernetes sets them.
EXPOSE 9464 9465 8080
ENTRYPOINT ["/usr/local/bin/projector"]

# syntax=docker/dockerfile:1
# mlflow-authz: a static binary on a distroless, non-root base.
#   make image                       (sets VERSION and COMMIT from git)
#   docker build --build-arg VERSION=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) -t mlflow-authz .
# Pin both bases by digest in your own builds (FROM image:tag@sha256:…).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Static (no cgo: SQLite is pure Go), no local paths in the binary, and the
# version that `mlflow-authz version` prints. The cache mounts keep modules
# and build results between builds; only the modules the binary needs are
# downloaded (not the go.mod tools).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/mlflow-authz ./cmd/mlflow-authz

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mlflow-authz /mlflow-authz
# distroless's "nonroot" user; manifests/base runs the pods as this uid.
USER 65532:65532
EXPOSE 9191 8080
ENTRYPOINT ["/mlflow-authz"]
CMD ["serve", "--config", "/etc/mlflow-authz/config.yaml"]

# koordinator's image: FROM scratch, non-root, only the static binary at /bin/koordinator.
# The entrypoint installs it: an init container with the emptyDir mounted at /koordinator and
# `args: [/koordinator]` copies it to /koordinator/koordinator.
#
# Build with an engine: docker build -t koordinator .   (needs only the Go module proxy)
# Without an engine, `make image` writes the same image as an OCI tarball.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY internal internal
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=$VERSION" -o /out/koordinator ./cmd/koordinator

FROM scratch
COPY --from=build --chmod=0755 /out/koordinator /bin/koordinator
USER 65532:65532
ENTRYPOINT ["/bin/koordinator", "--install"]

# One image for both binaries: the CSI plugin (controller and node) and the storage-node agent.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
WORKDIR /src
COPY go.mod go.sum* ./
RUN go mod download
COPY . .
RUN make build VERSION=${VERSION} COMMIT=${COMMIT} BUILD_DATE=${BUILD_DATE}

FROM debian:bookworm-slim
# The node plugin formats, checks, resizes and mounts; the agent drives LVM.
RUN apt-get update && apt-get install -y --no-install-recommends \
      e2fsprogs xfsprogs util-linux mount lvm2 thin-provisioning-tools \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/nvmeof-csi /src/bin/nvmeof-agent /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/nvmeof-csi"]

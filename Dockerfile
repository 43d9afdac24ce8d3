# One image for both binaries: the CSI plugin (controller and node; the entrypoint) and the
# storage-node agent (/usr/local/bin/nvmeof-agent). Build:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# make build: static binaries (CGO_ENABLED=0) with the version injected by ldflags; the
# build args replace git describe, and -buildvcs=false keeps go from asking git about a
# .git it may not own.
RUN GOFLAGS=-buildvcs=false make build VERSION=${VERSION} COMMIT=${COMMIT} BUILD_DATE=${BUILD_DATE}

FROM debian:bookworm-slim
# What the binaries run, nothing else:
# - node plugin (k8s.io/mount-utils and resize): mount, umount (mount); blkid, blockdev
#   (util-linux); mkfs.ext4, fsck.ext4, resize2fs, dumpe2fs (e2fsprogs); mkfs.xfs,
#   xfs_growfs, xfs_io (xfsprogs). NVMe-oF itself is /dev/nvme-fabrics and sysfs: no nvme-cli.
# - agent, lvm backend: lvm (lvm2), thin_check/thin_repair for pool activation
#   (thin-provisioning-tools). The dmthin backend's volume operations run no program
#   (device-mapper ioctls). Both backends run thin_dump and thin_delta
#   (thin-provisioning-tools) for changed-block tracking. The nvmet target is configfs: no
#   nvmetcli.
# No kmod: modules (nvme-tcp, nvme-rdma, nvmet*, dm-thin-pool; dm-snapshot for lvm) are the
# host's to load; the kernel loads transports on demand. No ca-certificates: every TLS peer is checked against
# the operator's CA, never the system roots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       util-linux mount e2fsprogs xfsprogs lvm2 thin-provisioning-tools \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/nvmeof-csi /src/bin/nvmeof-agent /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/nvmeof-csi"]

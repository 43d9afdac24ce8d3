// mkimage: writes single-layer container image tarballs (docker-archive) for the e2e tier,
// where the images are imported into containerd and never pulled. Own module so the main
// module does not depend on go-containerregistry.
module github.com/nvmeof-csi/nvmeof-csi/tests/e2e/tools/mkimage

go 1.25.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
)

module github.com/nvmeof-csi/nvmeof-csi

go 1.26

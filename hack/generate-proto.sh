#!/usr/bin/env bash
# Regenerates the Go code of every .proto under pkg/ with protoc (Debian's protobuf-compiler)
# and the protoc-gen-go / protoc-gen-go-grpc versions pinned in go.mod. The output is committed;
# `make verify` checks that regenerating changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "generate-proto: protoc missing (run hack/install-deps.sh)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
for proto in $(git ls-files --cached --others --exclude-standard 'pkg/*.proto'); do
  dir=$(dirname "$proto")
  protoc -I "$dir" \
    --plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out="$dir" --go_opt=paths=source_relative \
    --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" --go-grpc_out="$dir" --go-grpc_opt=paths=source_relative \
    "$(basename "$proto")"
done

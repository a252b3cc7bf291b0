#!/usr/bin/env bash
# Regenerates Sources/ONNX/onnx.pb.swift, the Swift messages of ONNX's onnx.proto. The generated
# file is committed: the build runs neither protoc nor a plugin. Run this only to move to another
# onnx or swift-protobuf version (then change the pins below and, for swift-protobuf, the
# `from:` in Package.swift to the same version, since the generated code must match its runtime).
#
# What it does, step by step:
#  1. onnx.proto from the onnx wheel of PyPI, version ONNX_VERSION (`pip download`, so whatever
#     onnx is installed does not matter), copied to Sources/ONNX/proto/onnx.proto. The wheel's
#     onnx.proto and onnx-ml.proto are the same messages (they differ in one comment); the plain
#     onnx.proto is the one ONNX documents as "the" IR.
#  2. protoc from Debian's protobuf-compiler (installed if missing; Debian 12 has 3.21.12).
#  3. protoc-gen-swift built from swift-protobuf's source at tag SWIFT_PROTOBUF_VERSION, in
#     .build-protoc-gen-swift/ (git-ignored; reused on later runs).
#  4. protoc --swift_opt=Visibility=Public --swift_out=Sources/ONNX onnx.proto, run in
#     Sources/ONNX/proto so the generated header names the source as plain `onnx.proto`.
set -euo pipefail
cd "$(dirname "$0")/.."

ONNX_VERSION=1.23.2
SWIFT_PROTOBUF_VERSION=1.39.0
PROTOC_VERSION="libprotoc 3.21.12"   # Debian 12's; only checked, with a warning

root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. onnx.proto from the wheel.
python3 -m pip download --quiet --no-deps --only-binary=:all: "onnx==$ONNX_VERSION" -d "$work/wheel"
python3 - "$work/wheel" "$root/Sources/ONNX/proto/onnx.proto" <<'EOF'
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/onnx-*.whl")
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("onnx/onnx.proto"))
EOF

# 2. protoc.
if ! command -v protoc >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler
fi
[ "$(protoc --version)" = "$PROTOC_VERSION" ] ||
    echo "warning: $(protoc --version), not $PROTOC_VERSION; the output may differ from the committed one" >&2

# 3. protoc-gen-swift at the pinned tag.
plugin_src=.build-protoc-gen-swift/swift-protobuf
plugin=$plugin_src/.build/release/protoc-gen-swift
if [ ! -x "$plugin" ] || [ "$("$plugin" --version)" != "protoc-gen-swift $SWIFT_PROTOBUF_VERSION" ]; then
    rm -rf "$plugin_src"
    git -c advice.detachedHead=false clone --quiet --depth 1 --branch "$SWIFT_PROTOBUF_VERSION" \
        https://github.com/apple/swift-protobuf "$plugin_src"
    swift build -c release --package-path "$plugin_src" --product protoc-gen-swift
fi
[ "$("$plugin" --version)" = "protoc-gen-swift $SWIFT_PROTOBUF_VERSION" ] ||
    { echo "error: $plugin is $("$plugin" --version), not $SWIFT_PROTOBUF_VERSION" >&2; exit 1; }

# 4. Generate.
(cd Sources/ONNX/proto &&
    protoc --plugin=protoc-gen-swift="$root/$plugin" --swift_opt=Visibility=Public --swift_out=.. onnx.proto)

echo "onnx $ONNX_VERSION, $(protoc --version), $("$plugin" --version)"
sha256sum Sources/ONNX/proto/onnx.proto Sources/ONNX/onnx.pb.swift

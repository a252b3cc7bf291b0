#!/usr/bin/env bash
# Installs what building neuralscale needs on Debian: OpenBLAS (cblas.h), HDF5, zlib,
# libjpeg-turbo, libpng and pkg-config.
# Swift 6 must already be on PATH (swift.org toolchain). Safe to run repeatedly.
set -euo pipefail

# Extra Debian packages may be named as arguments (the main job adds dataset-fashion-mnist).
packages=(libopenblas-dev libhdf5-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev pkg-config "$@")
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

command -v swift >/dev/null || { echo "error: swift is not on PATH; install Swift 6 from swift.org" >&2; exit 1; }

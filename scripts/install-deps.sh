#!/usr/bin/env bash
# Installs what building neuralscale needs on Debian: OpenBLAS (cblas.h), HDF5, zlib,
# libjpeg-turbo, libpng, pkg-config, and Open MPI (headers, library and mpirun: data-parallel
# train and descend; a build without it works, single-process); and the Python side of the tests and of ONNX
# verification (scripts/verify_onnx.py): numpy, onnx, onnxruntime and h5py from PyPI.
# Swift 6 must already be on PATH (swift.org toolchain). Safe to run repeatedly.
#
# Python: the packages go into the `python3` found on PATH, the one every script and test runs,
# with that interpreter's own pip, and only those that it cannot import yet (at the pinned
# versions below). Debian's own python3 is "externally managed" (PEP 668) and refuses pip
# installs; PIP_BREAK_SYSTEM_PACKAGES=1 lets pip install there (pip < 23.0.1 ignores it and
# needs no such permission). No virtual environment: then every caller would have to find it.
set -euo pipefail

# Extra Debian packages may be named as arguments (the main job adds dataset-fashion-mnist).
packages=(libopenblas-dev libhdf5-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev pkg-config libopenmpi-dev openmpi-bin "$@")
# python3 and its pip from Debian when there is none on PATH.
command -v python3 >/dev/null || packages+=(python3)
{ command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; } || packages+=(python3-pip)
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

# Python module -> pinned PyPI requirement.
python_packages=(numpy:numpy==2.4.6 onnx:onnx==1.23.2 onnxruntime:onnxruntime==1.31.1 h5py:h5py==3.16.0)
requirements=()
for entry in "${python_packages[@]}"; do
    python3 -c "import ${entry%%:*}" 2>/dev/null || requirements+=("${entry#*:}")
done
if ((${#requirements[@]})); then
    echo "installing with pip: ${requirements[*]}"
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
        python3 -m pip install --quiet --no-warn-script-location "${requirements[@]}"
fi

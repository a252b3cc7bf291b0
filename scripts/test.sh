#!/usr/bin/env bash
# The test command: installs dependencies, then builds and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# XCTest only: the suites use no Swift Testing, whose empty run would print "0 tests".
swift test --disable-swift-testing "$@"

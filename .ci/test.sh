#!/usr/bin/env bash
# Set up a fresh Debian machine and run the whole test suite.
# This is the README's test command; .ci/run calls it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests drive for real: the git CLI, Xen's Xenstore clients
# and reference daemons, losetup for loop devices, a C compiler for the xsref shim.
debs=(git xenstore-utils xen-utils-4.17 util-linux gcc libc6-dev procps)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
exec python3 -m pytest -q -p no:cacheprovider "$@"

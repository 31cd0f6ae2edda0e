#!/usr/bin/env bash
# Installs what hull's tests and demo need on a fresh Debian machine (root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  busybox-static   # test images and bundles
  runc             # benchmark baseline, and containerd's runc shim tests
  containerd       # shim tests (containerd + ctr)
  docker-registry  # a real registry on 127.0.0.1 for pull tests
  skopeo umoci     # push to and cross-check the registry and archives
  apache2-utils    # htpasswd for the registry's basic auth test
  iproute2 procps  # ip netns, ps (hullc ps)
  nftables         # hull-net: NAT and published ports
  podman conmon    # hullc under podman (crates/hullc/tests/podman.rs)
  uidmap           # newuidmap/newgidmap: rootless multi-range mappings (crates/hullc/tests/rootless.rs, rootless hull)
  passt            # pasta: rootless hull's user-mode network and published ports (crates/hull/tests/rootless.rs)
  fuse-overlayfs   # rootless hull's overlay where the kernel refuses one (crates/hull/tests/rootless_fuse.rs)
  docker.io        # Docker Engine 20.10 drives hullc (crates/hullc/tests/engines.rs)
  tini             # hull run --init: /usr/bin/tini-static as PID 1 (crates/hull/tests/run_flags.rs)
  docker-compose   # compose 1.29 against `hull system service` (crates/hull/tests/api_compose.rs)
  containernetworking-plugins golang-go gcc jq curl  # CRI tests: CNI, cri-tools build, pause image
  protobuf-compiler  # protoc for k8s-cri's build script: the CRI tests' gRPC client (crates/hull-shim/tests/cri.rs)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  # docker.io's postinst starts a system dockerd (a docker0 bridge, iptables
  # rules) unless a policy forbids it; the tests start private daemons.
  if [[ " ${missing[*]} " == *" docker.io "* && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Python docker SDK, a third client of `hull system service` (crates/hull/tests/api_compose.rs).
if ! python3 -c 'import docker, sys; sys.exit(docker.__version__ != "7.1.0")' 2>/dev/null; then
  python3 -m pip install -q 'docker==7.1.0' ||
    python3 -m pip install -q --break-system-packages 'docker==7.1.0'
fi
if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi

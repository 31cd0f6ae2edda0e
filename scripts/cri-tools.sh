#!/usr/bin/env bash
# Builds crictl and critest from cri-tools v1.26.1 (issue 23) with Debian's Go 1.19, offline, from
# the tag's vendor dir. The binaries land in OUT (default target/cri-tools/), where
# crates/hull-shim/tests/cri.rs and bench/cri.sh look for them.
#
#   scripts/cri-tools.sh [SRC] [OUT]
#
# SRC: a cri-tools source tree at v1.26.1, or a git directory holding the tag (a clone, or the
# bare mirror that the search tool's `fetch github:kubernetes-sigs/cri-tools` leaves under
# /work/.mirror). Default: $CRI_TOOLS_SRC, else that mirror if present, else a shallow clone from
# GitHub (the one step that needs the network; 8 MB compressed, too big to vendor into hull).
set -euo pipefail
TAG=v1.26.1
root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-${CRI_TOOLS_SRC:-}}
out=${2:-$root/target/cri-tools}
mirror=/work/.mirror/kubernetes-sigs+cri-tools/repo

if [[ -x $out/crictl && -x $out/critest && $(cat "$out/.tag" 2>/dev/null) == "$TAG" ]]; then
  echo "cri-tools $TAG already built in $out"
  exit 0
fi
if ! command -v go >/dev/null; then
  apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/cri-tools
mkdir -p "$tree"
if [[ -z $src && -d $mirror ]]; then src=$mirror; fi
if [[ -z $src ]]; then
  echo "cri-tools: no source given and no mirror; cloning $TAG from GitHub" >&2
  git clone -q --depth 1 --branch "$TAG" https://github.com/kubernetes-sigs/cri-tools "$tree"
elif [[ -f $src/go.mod ]]; then
  cp -a "$src/." "$tree/"
elif git --git-dir="$src" rev-parse -q --verify "refs/tags/$TAG" >/dev/null 2>&1; then
  git --git-dir="$src" archive "$TAG" | tar -x -C "$tree"
elif git -C "$src" rev-parse -q --verify "refs/tags/$TAG" >/dev/null 2>&1; then
  git -C "$src" archive "$TAG" | tar -x -C "$tree"
else
  echo "cri-tools: $src is neither a source tree nor a git dir with tag $TAG" >&2
  exit 1
fi
grep -q '^module github.com/kubernetes-sigs/cri-tools' "$tree/go.mod" || {
  echo "cri-tools: $tree/go.mod is not cri-tools'" >&2
  exit 1
}

# Offline: everything comes from vendor/; nothing may reach a proxy.
export GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0
export GOCACHE=${GOCACHE:-$root/target/cri-tools-gocache} GOPATH=$work/gopath
mkdir -p "$out"
ldflags="-X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$TAG"
(
  cd "$tree"
  go build -trimpath -ldflags "$ldflags" -o "$out/crictl" ./cmd/crictl
  go test -c -trimpath -ldflags "$ldflags" -o "$out/critest" ./cmd/critest
)
echo "$TAG" >"$out/.tag"
"$out/crictl" --version
echo "cri-tools $TAG: $out/crictl $out/critest"

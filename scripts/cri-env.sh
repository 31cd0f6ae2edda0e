#!/usr/bin/env bash
# A private Kubernetes-CRI stack for hull's tests and benchmarks (issue 23), all on this host and
# offline: containerd 1.6 (Debian) with its CRI plugin, a local docker-registry as the mirror of
# docker.io / registry.k8s.io / gcr.io holding locally built images (busybox-static, a pause
# binary), and a CNI bridge from Debian's containernetworking-plugins.
#
#   scripts/cri-env.sh up DIR     # DIR: an empty directory; prints the CRI endpoint
#   scripts/cri-env.sh down DIR   # removes everything `up` made, also after a failure
#
# Env for `up`: HULL_BIN_DIR (containerd-shim-hull-v2 and hullc; put first on containerd's PATH),
# CRI_CGROUP_PARENT (removed by `down`), CRICTL (optional: without it the caller removes its pods
# through its own CRI client before `down`). Runtime handlers: `hull` (io.containerd.hull.v2) and
# `runc` (io.containerd.runc.v2, Debian's runc), the default.
#
# What keeps it off the host's own containerd: root, state and sockets under DIR; containerd runs
# in a private mount namespace with tmpfs over /run/containerd (containerd 1.6 puts shim sockets in
# /run/containerd/s whatever its state dir; the shims' hullc/runc roots live there too) and over
# /run/netns (CRI's pinned pod netns), so every mount made there vanishes with the namespace. The
# bridge `hcri0` (10.237.0.0/24, the host at .1, host-local IPAM state under DIR) has isGateway
# and ipMasq off: the plugin then touches neither iptables nor sysctls (no portmap plugin either:
# host ports would need iptables). CRI_ENV_CRITEST_IMAGES=1 also builds critest's images. Callers that set it up hold
# /tmp/hull-net-tests.lock (flock) while it exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BRIDGE=hcri0
SUBNET=10.237.0.0/24
HOST_ADDR=10.237.0.1/24
RANGE_START=10.237.0.2

log() { echo "cri-env: $*" >&2; }

# An OCI layout DIR/oci/NAME (tag latest) from a rootfs dir, one uncompressed layer.
# mkimage NAME ROOTFS CMD_JSON [USER]
mkimage() {
  local name=$1 rootfs=$2 cmd=$3 user=${4:-} out=$D/oci/$1
  mkdir -p "$out/blobs/sha256"
  blob() { # file -> "sha256:HEX SIZE"
    local hex
    hex=$(sha256sum "$1" | cut -c1-64)
    mv "$1" "$out/blobs/sha256/$hex"
    echo "sha256:$hex $(stat -c %s "$out/blobs/sha256/$hex")"
  }
  tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -C "$rootfs" -cf "$out/l.tar" .
  read -r layer lsize < <(blob "$out/l.tar")
  jq -cn --arg l "$layer" --argjson cmd "$cmd" --arg u "$user" \
    '{architecture:"amd64",os:"linux",config:({Env:["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],Cmd:$cmd,WorkingDir:"/"}
      + (if $u == "" then {} else {User:$u} end)),rootfs:{type:"layers",diff_ids:[$l]}}' >"$out/c.json"
  read -r cfg csize < <(blob "$out/c.json")
  jq -cn --arg c "$cfg" --argjson cs "$csize" --arg l "$layer" --argjson ls "$lsize" \
    '{schemaVersion:2,mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json",digest:$c,size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar",digest:$l,size:$ls}]}' >"$out/m.json"
  read -r man msize < <(blob "$out/m.json")
  jq -cn --arg m "$man" --argjson ms "$msize" \
    '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$m,size:$ms,
      annotations:{"org.opencontainers.image.ref.name":"latest"}}]}' >"$out/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
}

push() { # push NAME REPO:TAG
  skopeo copy -q --dest-tls-verify=false "oci:$D/oci/$1:latest" "docker://127.0.0.1:$PORT/$2" >/dev/null
}

build_images() {
  local bb=$D/rootfs/busybox pa=$D/rootfs/pause
  mkdir -p "$bb/bin" "$bb/etc" "$pa"
  cp /bin/busybox "$bb/bin/busybox"
  local a
  # Hard links, as the busybox images on Docker Hub have them: a path masked by a bind mount
  # (CRI MaskedPaths: /bin/ls) must not take the shell with it, which a symlink would.
  for a in $(/bin/busybox --list); do
    [[ $a == busybox ]] || ln -f "$bb/bin/busybox" "$bb/bin/$a"
  done
  # Applets Debian's busybox-static lacks and critest runs (pgrep, ipcs -m), as small scripts.
  printf '#!/bin/sh\nr=1\nfor p in /proc/[0-9]*; do\n  c=$(cat $p/comm 2>/dev/null) || continue\n  echo "$c" | grep -q -- "$1" && { echo ${p#/proc/}; r=0; }\ndone\nexit $r\n' >"$bb/bin/pgrep"
  printf '#!/bin/sh\n[ "$1" = -m ] || { echo "ipcs: only -m" >&2; exit 1; }\necho "------ Shared Memory Segments --------"\nawk '"'"'NR > 1 { print $1, $2, $8, $3, $4, $7 }'"'"' /proc/sysvipc/shm\n' >"$bb/bin/ipcs"
  chmod 755 "$bb/bin/pgrep" "$bb/bin/ipcs"
  mkdir -p "$bb"/{proc,sys,dev,tmp,root,var/www}
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$bb/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$bb/etc/group"
  mkimage busybox "$bb" '["sh"]'
  gcc -static -Os -s -o "$pa/pause" "$here/cri/pause.c"
  mkimage pause "$pa" '["/pause"]'
  push busybox library/busybox:latest
  push busybox e2e-test-images/busybox:1.29-2
  push pause pause:3.8
  if [[ ${CRI_ENV_CRITEST_IMAGES:-} == 1 ]]; then critest_images; fi
}

# The images critest v1.26.1 pulls, rebuilt on busybox as cri-tools' images/ Dockerfiles build
# them (users and groups), and busybox httpd standing in for nginx and Apache (the specs only
# GET / and, for httpd, look for its command line in the log). Not reproducible: the image
# pinned by digest, nonewprivs.
critest_images() {
  local bb=$D/rootfs/busybox u=$D/rootfs/users
  cp -a "$bb" "$u"
  printf 'www-data:x:33:33:www-data:/var/www:/bin/false\ndefault-user:x:1000:1000::/home/default-user:/bin/sh\n' >>"$u/etc/passwd"
  printf 'www-data:x:33:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$u/etc/group"
  local -A users=([user-uid]=1002 [user-username]=www-data [user-uid-group]=1003:1004
    [user-username-group]=www-data:1004 [predefined-group]=1000)
  local n
  for n in "${!users[@]}"; do
    mkimage "test-image-$n" "$u" '["sh"]' "${users[$n]}"
    push "test-image-$n" "k8s-staging-cri-tools/test-image-$n:latest"
  done
  # Image specs only pull, list and remove: one distinct file each (images/image-test's ADD),
  # the three test-image-tags share one image.
  for n in test-image-latest:latest test-image-tag:test test-image-tag:all \
    test-image-1:latest test-image-2:latest test-image-3:latest test-image-tags:1; do
    local l=${n/:/-}
    mkdir -p "$D/rootfs/$l"
    echo "$n" >"$D/rootfs/$l/TEST"
    mkimage "$l" "$D/rootfs/$l" '["/TEST"]'
    push "$l" "k8s-staging-cri-tools/$n"
  done
  push test-image-tags-1 k8s-staging-cri-tools/test-image-tags:2
  push test-image-tags-1 k8s-staging-cri-tools/test-image-tags:3
  # "nginx": a script (so its comm is nginx, as `pidof nginx` wants) that writes
  # /var/run/nginx.pid and serves / with busybox httpd.
  echo '<html>hull critest</html>' >"$bb/var/www/index.html"
  mkdir -p "$bb/usr/sbin" "$bb/var/run"
  for n in 80 12003; do
    printf '#!/bin/sh\necho $$ >/var/run/nginx.pid\ntrap "exit 0" TERM INT\nhttpd -f -p %s -h /var/www &\nwait\n' "$n" >"$bb/usr/sbin/nginx"
    chmod 755 "$bb/usr/sbin/nginx"
    mkimage "web-$n" "$bb" '["/usr/sbin/nginx"]'
  done
  push web-80 e2e-test-images/nginx:1.14-2
  push web-12003 k8s-staging-cri-tools/hostnet-nginx-amd64:latest
  mkimage apache "$bb" '["sh","-c","echo \"Command line: httpd -D FOREGROUND\" >&2; exec httpd -f -p 80 -h /var/www"]'
  push apache e2e-test-images/httpd:2.4.39-4
}

start_registry() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    ss -Hltn "sport = :$port" | grep -q . || break
  done
  PORT=$port
  mkdir -p "$D/registry"
  cat >"$D/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $D/registry}}
http: {addr: 127.0.0.1:$PORT}
EOF
  docker-registry serve "$D/registry.yml" >"$D/registry.log" 2>&1 &
  echo $! >"$D/registry.pid"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && return 0
    sleep 0.1
  done
  log "registry did not start: $(cat "$D/registry.log")"
  return 1
}

write_configs() {
  mkdir -p "$D/cni" "$D/cni-ipam"
  cat >"$D/cni/10-hull-cri.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "hull-cri", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET", "rangeStart": "$RANGE_START"}]],
            "dataDir": "$D/cni-ipam"}}]}
EOF
  # The bridge made here with the host's address on it (what isGateway would do, without the
  # ip_forward sysctl the plugin then sets): the host reaches pod IPs, as critest's web specs
  # need. The plugin takes an existing bridge as it is.
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_ADDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local mirrors="" r
  for r in docker.io registry.k8s.io gcr.io; do
    mirrors+="[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"$r\"]
  endpoint = [\"http://127.0.0.1:$PORT\"]
"
  done
  cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$D/c.sock"
[ttrpc]
  address = "$D/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.8"
  # No CAP_SYS_RESOURCE here (containers in containers): oom_score_adj may only go up.
  restrict_oom_score_adj = true
  enable_cdi = false
  stream_server_address = "127.0.0.1"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull]
  runtime_type = "io.containerd.hull.v2"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$D/cni"
$mirrors
EOF
}

start_containerd() {
  mkdir -p /run/containerd /run/netns
  # A slave of the host's mounts that is shared within itself: nothing propagates back to the
  # host, and CRI's rshared/rslave mounts (critest's propagation specs) find "/" shared.
  PATH="${HULL_BIN_DIR:+$HULL_BIN_DIR:}$PATH" unshare -m --propagation slave -- sh -c '
    mount --make-rshared / &&
    mount -t tmpfs -o mode=0711 hull-cri /run/containerd &&
    mount -t tmpfs -o mode=0755 hull-cri /run/netns &&
    exec containerd --config "$1"' sh "$D/config.toml" >"$D/containerd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$D/containerd.pid"
  for _ in $(seq 200); do
    if [[ -S $D/c.sock ]] && ready; then
      readlink "/proc/$pid/ns/mnt" >"$D/mntns"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  log "containerd did not start: $(tail -20 "$D/containerd.log")"
  return 1
}

crictl_() { "$CRICTL" --timeout 30s -r "unix://$D/c.sock" -i "unix://$D/c.sock" "$@"; }
# CRI answers (crictl info) when crictl is there; else containerd's own API answers (ctr, which
# the containerd package ships), and the caller's CRI client retries until the plugin is up.
ready() {
  if command -v "$CRICTL" >/dev/null 2>&1; then
    crictl_ info >/dev/null 2>&1
  else
    ctr --address "$D/c.sock" version >/dev/null 2>&1
  fi
}

# Processes (shims, their containers' leftovers) in containerd's private mount namespace.
ns_pids() {
  local ns p
  ns=$(cat "$D/mntns" 2>/dev/null) || return 0
  [[ -n $ns ]] || return 0
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && echo "${p#/proc/}"
  done
  return 0
}

kill_pidfile() { # pidfile: SIGTERM, wait up to 5 s, SIGKILL
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

rm_cgroup_tree() { # remove a cgroup dir and its children in every hierarchy, children first
  local rel=$1 h
  [[ -n $rel && $rel != / ]] || return 0
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [[ -d $h/$rel ]] || continue
    find "$h/$rel" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

up() {
  mkdir -p "$D"
  CRICTL=${CRICTL:-crictl}
  start_registry
  build_images
  write_configs
  echo "$PORT" >"$D/registry.port"
  start_containerd
  echo "unix://$D/c.sock"
}

down() {
  CRICTL=${CRICTL:-crictl}
  if [[ -S $D/c.sock ]] && [[ -n $(cat "$D/containerd.pid" 2>/dev/null) ]] &&
    command -v "$CRICTL" >/dev/null 2>&1; then
    # Gracefully first: CRI stops and removes pods (CNI DEL, shims exit). Without crictl the
    # caller did it through its own CRI client.
    crictl_ rmp -af >/dev/null 2>&1 || true
  fi
  kill_pidfile "$D/containerd.pid"
  local p
  for p in $(ns_pids); do kill -KILL "$p" 2>/dev/null || true; done
  # Containers left running (their shims gone): kill by cgroup, then remove the cgroups.
  if [[ -n ${CRI_CGROUP_PARENT:-} ]]; then
    local h
    for h in /sys/fs/cgroup/*/"$CRI_CGROUP_PARENT" /sys/fs/cgroup/"$CRI_CGROUP_PARENT"; do
      [[ -d $h ]] || continue
      find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    done
    sleep 0.2
    rm_cgroup_tree "$CRI_CGROUP_PARENT"
  fi
  kill_pidfile "$D/registry.pid"
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$D"
}

cmd=${1:-}
D=${2:-}
[[ -n $D ]] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
D=$(realpath -m "$D")
case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac

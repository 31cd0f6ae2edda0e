# Helpers of the guest checks (sourced by guest.sh and systemd.sh; busybox sh, dash).
npass=0
nfail=0

pass() { npass=$((npass + 1)); echo "PASS $1"; }
fail() { nfail=$((nfail + 1)); echo "FAIL $1: $2"; }

# One line of at most 400 characters: what a FAIL line shows of a command's output.
oneline() { tr '\n' '|' | cut -c1-400; }

# limited CMD...: CMD, a program killed after 300 s (TCG on a busy machine is slow) or one of
# our functions (they bound their own waits). Its output goes through a file ($LIMITED_OUT,
# one per user): a process it leaves behind (a container's init) may hold a pipe open
# forever, a file it may keep.
limited() {
    lout=${LIMITED_OUT:-/tmp/limited.out}
    case "$(type "$1")" in
    *function*) "$@" > "$lout" 2>&1 ;;
    *) timeout 300 "$@" > "$lout" 2>&1 ;;
    esac
    lrc=$?
    cat "$lout"
    return $lrc
}

# check NAME CMD...: passes when CMD exits 0 (within 300 s).
check() {
    name=$1
    shift
    if out=$(limited "$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "exit $?: $(echo "$out" | oneline)"
    fi
}

# expect NAME WANT CMD...: passes when CMD exits 0 and prints exactly WANT.
expect() {
    name=$1 want=$2
    shift 2
    out=$(limited "$@" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "$want" ]; then
        pass "$name"
    else
        fail "$name" "want '$want', got exit $rc: $(echo "$out" | oneline)"
    fi
}

# expect_rc NAME WANT_RC CMD...: passes when CMD exits with WANT_RC.
expect_rc() {
    name=$1 want=$2
    shift 2
    out=$(limited "$@" 2>&1)
    rc=$?
    if [ $rc -eq "$want" ]; then
        pass "$name"
    else
        fail "$name" "want exit $want, got $rc: $(echo "$out" | oneline)"
    fi
}

# wait_for SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS.
wait_for() {
    n=$(($1 * 5))
    shift
    while [ $n -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        n=$((n - 1))
    done
    return 1
}

summary() { echo "VM-SUMMARY pass=$npass fail=$nfail"; }

# wait_for_output CMD...: CMD's output once it succeeds (tries for 20 s).
wait_for_output() {
    n=100
    while ! "$@" 2>/dev/null; do
        n=$((n - 1))
        [ $n -gt 0 ] || return 1
        sleep 0.2
    done
}

# Docker's default capabilities (CAP_MKNOD among them: the mknod checks need it).
CAPS='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW",
"CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT",
"CAP_KILL","CAP_AUDIT_WRITE"]'

# bundle ID ARGS_JSON [RESOURCES_JSON] [CGROUPS_PATH]: /b/ID/config.json, a container of the
# busybox rootfs $R in cgroup /hulltest/ID unless CGROUPS_PATH (may be empty) says otherwise.
bundle() {
    res=${3:-"{}"}
    mkdir -p "/b/$1"
    cat > "/b/$1/config.json" <<JSON
{"ociVersion": "1.1.0", "root": {"path": "$R", "readonly": true}, "hostname": "c",
 "process": {"args": $2, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0},
  "capabilities": {"bounding": $CAPS, "effective": $CAPS, "permitted": $CAPS}},
 "mounts": [
  {"destination": "/proc", "type": "proc", "source": "proc"},
  {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
  {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
  {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
   "options": ["nosuid", "noexec", "nodev", "ro"]},
  {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}],
 "linux": {"cgroupsPath": "${4-/hulltest/$1}", "resources": $res,
  "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
   {"type": "network"}, {"type": "cgroup"}]}}
JSON
}

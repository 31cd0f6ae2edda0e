#!/bin/sh
# The checks of scripts/vm-systemd.sh: `hullc --systemd-cgroup` under a real systemd (PID 1 of a
# Debian root, pure cgroup v2), run by the oneshot unit hull-check.service with its output on the
# serial console. Each check prints `PASS name` or `FAIL name: reason`; the last line is
# `VM-SUMMARY pass=N fail=M`. Then it powers the machine off.
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
. /vm/lib.sh
R=/ctr/rootfs
mkdir -p /b

status() { hullc state "$1" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
initpid() { hullc state "$1" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p'; }
is_stopped() { [ "$(status "$1")" = stopped ]; }
# The unit's state as systemctl prints it ("active", "inactive"...; exit status aside).
unit_state() { systemctl is-active "$1" || true; }
# sdcreate ID: `hullc --systemd-cgroup create`, the container's stdio on a file (an init holding
# a pipe open would keep a `$(...)` capture waiting).
sdcreate() {
    hullc --systemd-cgroup create -b "/b/$1" "$1" < /dev/null > "/tmp/$1.out" 2>&1 || {
        cat "/tmp/$1.out"
        return 1
    }
}

echo "VM-SYSTEMD $(systemctl --version | head -n 1); $(uname -r)"
check "systemd is init" sh -c '[ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" = systemd ]'
check "system bus" test -S /run/dbus/system_bus_socket
check "hullc features: systemd true" sh -c 'hullc features | grep -q "\"systemd\": true"'

# --- a scope in system.slice, limits as unit properties and in cgroupfs --------------------
SC=/sys/fs/cgroup/system.slice/hull-test1.scope
bundle test1 '["sleep", "1000"]' \
    '{"memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}, "pids": {"limit": 42}}' \
    system.slice:hull:test1
check "create --systemd-cgroup (system.slice:hull:test1)" sdcreate test1
expect "hull-test1.scope active" active unit_state hull-test1.scope
check "systemctl status hull-test1.scope" systemctl status --no-pager hull-test1.scope
pid=$(initpid test1)
expect "scope's cgroup.procs holds the init" "$pid" cat "$SC/cgroup.procs"
expect "init's cgroup is the scope" "0::/system.slice/hull-test1.scope" cat "/proc/$pid/cgroup"
expect "memory.max from resources" 67108864 cat "$SC/memory.max"
expect "cpu.max from resources" "50000 100000" cat "$SC/cpu.max"
expect "pids.max from resources" 42 cat "$SC/pids.max"
expect "unit property MemoryMax" 67108864 systemctl show -P MemoryMax hull-test1.scope
expect "unit property TasksMax" 42 systemctl show -P TasksMax hull-test1.scope
expect "unit property Delegate" yes systemctl show -P Delegate hull-test1.scope
check "start" hullc start test1
expect "running" running status test1
expect "exec: the scope is the container's cgroup root" 67108864 \
    hullc exec test1 cat /sys/fs/cgroup/memory.max
# (--format json: minbase has no ps(1) for the table.)
expect "hullc ps: the init" "[$pid]" hullc ps --format json test1
check "events --stats: pids.current" sh -c 'hullc events --stats test1 | grep -q "\"current\""'
# Without --systemd-cgroup: the state knows the unit (containerd passes the flag anyway).
check "update --memory 128m" hullc update --memory 128m test1
expect "update: memory.max" 134217728 cat "$SC/memory.max"
expect "update: unit property MemoryMax" 134217728 systemctl show -P MemoryMax hull-test1.scope
# systemd writes its units' properties again at every reload: a limit kept only in cgroupfs
# would fall back to the unit's.
check "systemctl daemon-reload" systemctl daemon-reload
expect "memory.max after daemon-reload" 134217728 cat "$SC/memory.max"
check "pause" hullc pause test1
expect "paused: cgroup.freeze" 1 cat "$SC/cgroup.freeze"
check "resume" hullc resume test1
check "kill --all KILL" hullc kill --all test1 KILL
check "stopped after kill --all" wait_for 30 is_stopped test1
check "delete" hullc delete test1
expect "unit gone after delete" inactive unit_state hull-test1.scope
check "scope's cgroup removed" sh -c "[ ! -e $SC ]"

# --- a nested slice, delete --force of a running container ----------------------------------
NS=/sys/fs/cgroup/machine.slice/machine-a.slice/machine-a-b.slice/hull-t2.scope
bundle t2 '["sleep", "1000"]' '{}' machine-a-b.slice:hull:t2
check "create in machine-a-b.slice" sdcreate t2
check "start t2" hullc start t2
pid=$(initpid t2)
expect "nested slice expands as systemd's" \
    "0::/machine.slice/machine-a.slice/machine-a-b.slice/hull-t2.scope" cat "/proc/$pid/cgroup"
expect "hull-t2.scope in machine-a-b.slice" machine-a-b.slice systemctl show -P Slice hull-t2.scope
check "delete --force a running container" hullc delete --force t2
expect "t2's unit gone" inactive unit_state hull-t2.scope
check "t2's cgroup removed" sh -c "[ ! -e $NS ]"

# --- run in the default slice, exit status --------------------------------------------------
bundle rc3 '["sh", "-c", "exit 3"]' '{}' ""
expect_rc "run (no cgroupsPath: system.slice, hull-ID.scope): exit 3" 3 \
    hullc --systemd-cgroup run -b /b/rc3 rc3
check "rc3 left nothing" sh -c '[ ! -e /sys/fs/cgroup/system.slice/hull-rc3.scope ] &&
    [ "$(systemctl is-active hull-rc3.scope)" != active ]'

# --- bad input ------------------------------------------------------------------------------
bundle bad '["true"]' '{}' /not/a/slice/path
expect_rc "a plain path is refused under --systemd-cgroup" 1 sdcreate bad
check "its error names the format" grep -q 'slice:prefix:name' /tmp/bad.out
check "nothing left of it" sh -c '! hullc state bad 2>/dev/null'

# Nothing hullc started may stay in this unit's cgroup (systemd would wait for it at stop):
# every process there but this shell, and the awk (with its subshell) that reads the list, is a
# leak, printed as pid:comm.
leaks() {
    awk -v me=$$ 'BEGIN { getline s < "/proc/self/stat"; split(s, f, " "); self = f[1]; up = f[4] }
        $1 != me && $1 != self && $1 != up { c = ""; getline c < ("/proc/" $1 "/comm"); printf "%s:%s ", $1, c }' \
        /sys/fs/cgroup/system.slice/hull-check.service/cgroup.procs
}
expect "nothing left in hull-check.service's cgroup" "" leaks

summary
sync
# Immediately (reboot(2), as busybox's poweroff -f): the unit's own stop is not waited for.
systemctl poweroff -ff

# hullc on a pure cgroup v2 host (sourced by guest.sh). Bundles share one read-only busybox
# rootfs (/ctr/rootfs, made by vm-test.sh, the checks' scripts in /t); cgroups are
# /sys/fs/cgroup/hulltest/ID.
R=/ctr/rootfs
CG=/sys/fs/cgroup/hulltest
mkdir -p /b

# create ID: `hullc create` with the container's stdio on a file: the init inherits it and
# holds it open, so a pipe (a `$(...)` capture) would never see EOF.
# A create that does not return in 120 s is a failure, reported with where each hullc
# process waits (a hang must fail the lane, not stall it).
create() {
    timeout 120 hullc create -b "/b/$1" "$1" < /dev/null > "/tmp/$1.out" 2>&1 || {
        cat "/tmp/$1.out"
        for p in $(pgrep -f hullc); do
            echo "pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline") wchan=$(cat "/proc/$p/wchan")"
            cat "/proc/$p/stack" 2>/dev/null
        done
        return 1
    }
}

status() { hullc state "$1" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
initpid() { hullc state "$1" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p'; }
is_stopped() { [ "$(status "$1")" = stopped ]; }
cgfile() { cat "$CG/$1/$2"; }
# The first field of a cgroup file's line KEY (memory.events, cgroup.events).
cgkey() { sed -n "s/^$3 //p" "$CG/$1/$2"; }

# --- lifecycle, CLONE_INTO_CGROUP, cgroup namespace -------------------------------------
bundle life '["sleep", "1000"]'
check "hullc create" create life
expect "hullc state: created" created status life
pid=$(initpid life)
# The init was cloned into its cgroup (CLONE_INTO_CGROUP): it is there before start.
expect "init in its cgroup while created" "0::/hulltest/life" cat "/proc/$pid/cgroup"
expect "cgroup.procs lists the init" "$pid" cgfile life cgroup.procs
check "hullc start" hullc start life
expect "hullc state: running" running status life
expect "cgroup namespace: /proc/self/cgroup inside" "0::/" hullc exec life cat /proc/self/cgroup
# runc's cgroups.bats 6: init moved to a sub-cgroup and a domain controller enabled in the
# container's cgroup; the kernel then refuses new members there (EBUSY, no internal
# processes) and an exec is born in init's cgroup instead.
mkdir "$CG/life/foo"
echo "$pid" > "$CG/life/foo/cgroup.procs"
echo +memory > "$CG/life/cgroup.subtree_control"
expect "exec joins init's sub-cgroup once the container's is busy" "0::/foo" \
    hullc exec life cat /proc/self/cgroup
echo -memory > "$CG/life/cgroup.subtree_control"
echo "$pid" > "$CG/life/cgroup.procs"
rmdir "$CG/life/foo"
check "cgroup2 mounted inside the container" sh -c \
    'hullc exec life cat /proc/self/mountinfo | grep -q " /sys/fs/cgroup .* - cgroup2 "'
check "hullc kill KILL" hullc kill life KILL
check "stopped after kill" wait_for 20 is_stopped life
check "hullc delete" hullc delete life
check "cgroup removed after delete" sh -c "[ ! -e $CG/life ]"

bundle rc3 '["sh", "-c", "exit 3"]'
expect_rc "hullc run: exit status 3" 3 hullc run -b /b/rc3 rc3
bundle out '["echo", "out-0"]'
expect "hullc run: output" out-0 hullc run -b /b/out out
# The container's init is killed from outside (PID 1 of its namespace ignores its own kill -9).
run_killed() {
    bundle rc137 '["sleep", "1000"]'
    hullc run -b /b/rc137 rc137 < /dev/null > /dev/null 2>&1 &
    rp=$!
    wait_for 60 sh -c '[ "$(hullc state rc137 | grep -c running)" = 1 ]' &&
        hullc kill rc137 KILL
    wait $rp
}
expect_rc "hullc run: killed by SIGKILL is 137" 137 run_killed
check "hullc run: nothing left" sh -c "[ ! -e $CG/rc3 ] && [ -z \"\$(hullc list -q)\" ]"

# --- linux.resources on v2 ---------------------------------------------------------------
RES='{"memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728},
 "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
 "pids": {"limit": 50}, "blockIO": {"weight": 500},
 "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
 "unified": {"memory.high": "100663296"}}'
bundle res '["sleep", "1000"]' "$RES"
check "resources: create" create res
check "resources: start" hullc start res
expect "memory.max" 67108864 cgfile res memory.max
expect "memory.low (reservation)" 33554432 cgfile res memory.low
expect "memory.swap.max (swap - limit)" 67108864 cgfile res memory.swap.max
expect "cpu.weight (shares 512)" 20 cgfile res cpu.weight
expect "cpu.max" "50000 100000" cgfile res cpu.max
expect "cpuset.cpus" 0 cgfile res cpuset.cpus
expect "cpuset.mems" 0 cgfile res cpuset.mems
expect "pids.max" 50 cgfile res pids.max
if [ -e $CG/res/io.bfq.weight ]; then
    expect "io.bfq.weight" "default 500" cgfile res io.bfq.weight
else
    expect "io.weight (blkio 500)" "default 4950" cgfile res io.weight
fi
expect "hugetlb.2MB.max" 4194304 cgfile res hugetlb.2MB.max
expect "unified memory.high" 100663296 cgfile res memory.high
expect "inside: memory.max, pids.max, cpu.max" "67108864
50
50000 100000" hullc exec res cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max

check "hullc update flags" hullc update --memory 96m --memory-swap 192m --cpu-quota 20000 \
    --pids-limit 60 res
expect "update: memory.max" 100663296 cgfile res memory.max
expect "update: memory.swap.max" 100663296 cgfile res memory.swap.max
expect "update: cpu.max" "20000 100000" cgfile res cpu.max
expect "update: pids.max" 60 cgfile res pids.max
check "hullc update -r -" sh -c 'echo "{\"pids\": {\"limit\": 70}}" | hullc update -r - res'
expect "update -r: pids.max" 70 cgfile res pids.max

check "hullc pause" hullc pause res
expect "paused: state" paused status res
expect "paused: cgroup.freeze" 1 cgfile res cgroup.freeze
expect "paused: cgroup.events frozen" 1 cgkey res cgroup.events frozen
check "hullc resume" hullc resume res
expect "resumed: state" running status res
expect "resumed: cgroup.events frozen" 0 cgkey res cgroup.events frozen

pid=$(initpid res)
check "hullc ps: table lists sleep" sh -c 'hullc ps res | grep -q "sleep 1000"'
check "hullc ps -f json" sh -c "hullc ps -f json res | grep -q '^\[ *$pid *\]\$'"
check "hullc events --stats" sh -c 'hullc events --stats res > /tmp/stats.json &&
    grep -q "\"type\": *\"stats\"" /tmp/stats.json && grep -q "\"pids\": *{ *\"current\": *1" /tmp/stats.json &&
    grep -q "\"usage\"" /tmp/stats.json || { cat /tmp/stats.json; false; }'
check "resources: delete -f" hullc delete -f res

# --- OOM ---------------------------------------------------------------------------------
bundle oom '["sh", "/t/hog.sh"]' '{"memory": {"limit": 33554432, "swap": 33554432}}'
check "oom: create" create oom
hullc events oom > /tmp/oom.events 2>&1 &
evpid=$!
check "oom: start" hullc start oom
check "oom: the hog is killed, the container stops" wait_for 90 is_stopped oom
check "oom: memory.events oom_kill" sh -c "[ \"\$(sed -n 's/^oom_kill //p' $CG/oom/memory.events)\" -ge 1 ]"
wait_for 10 grep -q '"type": *"oom"' /tmp/oom.events
check "oom: hullc events reports oom" grep -q '"type": *"oom"' /tmp/oom.events
kill "$evpid" 2>/dev/null
wait "$evpid" 2>/dev/null
check "oom: delete" hullc delete -f oom

# --- devices (v2: an eBPF program) -------------------------------------------------------
# What the container can do: null=open /dev/null, mknod=mknod c 1 11 (kmsg), kmsg=write it.
# As runc, hullc appends its default rules to every list: /dev/null, zero, ... and mknod of
# any c/b device (so mknod works, opening what it made does not), unless `a *:* rwm` allows all.
devices_case() { # NAME RULES_JSON WANT
    bundle "dev-$1" '["sh", "/t/devs.sh"]' "{\"devices\": $2}"
    expect "devices $1: create+run, access inside" "$3" hullc run -b "/b/dev-$1" "dev-$1"
    hullc delete -f "dev-$1" >/dev/null 2>&1
}
DOCKER_DEVICES='[{"allow": false, "access": "rwm"},
 {"allow": true, "type": "c", "access": "m"}, {"allow": true, "type": "b", "access": "m"},
 {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
 {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
 {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
 {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
 {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
 {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
 {"allow": true, "type": "c", "major": 136, "access": "rwm"},
 {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
 {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]'
devices_case docker "$DOCKER_DEVICES" "null=ok zero=ok mknod=ok kmsg=no"
devices_case runc-default '[{"allow": false, "access": "rwm"}]' "null=ok zero=ok mknod=ok kmsg=no"
devices_case privileged '[{"allow": true, "access": "rwm"}]' "null=ok zero=ok mknod=ok kmsg=ok"
devices_case empty '[]' "null=ok zero=ok mknod=ok kmsg=no"

# `hullc spec`'s own config.json, as generated (rootfs next to it).
mkdir -p /b/spec
check "hullc spec" hullc spec --bundle /b/spec
ln -s $R /b/spec/rootfs
sed -i 's|^\( *\)"sh"$|\1"/t/devs.sh"|' /b/spec/config.json
# runc's spec asks for a terminal; these checks read plain output (as runc's own tests do).
sed -i 's|"terminal": *true|"terminal": false|' /b/spec/config.json
# (Its capabilities lack CAP_MKNOD.)
expect "hullc spec config: create+run, devices inside" "null=ok zero=ok mknod=no kmsg=-" \
    hullc run -b /b/spec spec
hullc delete -f spec >/dev/null 2>&1

check "hullc: no container left" sh -c '[ -z "$(hullc list -q)" ]'
check "hullc: no cgroup left" sh -c "[ -z \"\$(find $CG -mindepth 1 -type d)\" ]"

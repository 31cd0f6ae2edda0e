# The checks an ordinary user runs (sourced in the user's login shell by rootless.sh).

# alice: her cgroup /user.slice/alice is delegated (cpu memory pids).
delegated() {
    D=/sys/fs/cgroup/user.slice/alice
    check "rootless: hull load" hull load -i /vm/busybox.tar
    check "rootless: hull info says limits apply" sh -c '
        hull info | grep -E "^Cgroup Limits: +yes: " | grep -q "/user.slice/alice (controllers: cpu memory pids)"'
    check "rootless: a container without limits leaves the delegated cgroup alone" sh -c "
        hull run -d --name free --network none busybox sleep 1000 >/dev/null &&
        [ ! -e $D/hull-procs ] && [ -z \"\$(cat $D/cgroup.subtree_control)\" ] &&
        [ -n \"\$(cat $D/cgroup.procs)\" ]"
    check "rootless: update --memory of a container made without limits is refused" sh -c '
        out=$(hull update --memory 64m free 2>&1); rc=$?
        echo "$out"
        hull rm -f free >/dev/null
        [ $rc -ne 0 ] && echo "$out" | grep -q -- "--memory: container free was made without a cgroup"'
    expect "rootless: run --memory --pids-limit --cpus (cgroup files inside)" "67108864
50
50000 100000" hull run --rm --network none --memory 64m --pids-limit 50 --cpus 0.5 busybox \
        cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max
    check "rootless: the delegated cgroup holds no process, its leaf does" sh -c "
        [ -z \"\$(cat $D/cgroup.procs)\" ] && grep -q memory $D/cgroup.subtree_control &&
        [ -n \"\$(cat $D/hull-procs/cgroup.procs)\" ]"
    check "rootless: run -d: the container's cgroup below the delegated one" sh -c "
        hull run -d --name lim --network none --memory 32m busybox sleep 1000 &&
        [ \"\$(cat $D/hull/*/memory.max)\" = 33554432 ]"
    check "rootless: hull update --memory 48m (the container's cgroup)" sh -c "
        hull update --memory 48m lim && [ \"\$(cat $D/hull/*/memory.max)\" = 50331648 ]"
    check "rootless: hull stats reads the container's cgroup" sh -c '
        hull stats --no-stream --format json lim | grep -qE "\"MemLimit\": ?50331648"'
    check "rootless: hull rm -f" hull rm -f lim
    check "rootless: no cgroup of a container left" sh -c "[ -z \"\$(find $D/hull -mindepth 1 -type d)\" ]"
    check "rootless: hull system reset -f" hull system reset -f
    check "rootless: reset removed the containers' parent cgroup" test ! -e $D/hull
    [ "$nfail" = 0 ] || {
        find $D -type d; cat $D/cgroup.procs $D/cgroup.subtree_control $D/cgroup.controllers
        hull info
    } 2>&1 | sed 's/^/VM-DIAG /'
}

# bob: his cgroup /user.slice/bob is his, but not marked delegated (no user.delegate).
not_delegated() {
    check "rootless, not delegated: hull load" hull load -i /vm/busybox.tar
    check "rootless, not delegated: run --memory is refused, naming the flag and why" sh -c '
        out=$(hull run --rm --network none --memory 64m busybox true 2>&1) && exit 1
        echo "$out"
        echo "$out" | grep -q -- "--memory: .*/user.slice/bob is not delegated to you (it is yours, but lacks the user.delegate=1 mark"'
    check "rootless, not delegated: hull info says no" sh -c '
        hull info | grep -qE "^Cgroup Limits: +no: .*/user.slice/bob is not delegated"'
    expect "rootless, not delegated: runs without limits" ok \
        hull run --rm --network none busybox echo ok
    check "rootless, not delegated: hull update --memory is refused" sh -c '
        hull run -d --name free --network none busybox sleep 1000 >/dev/null || exit 1
        out=$(hull update --memory 64m free 2>&1); rc=$?
        echo "$out"
        hull rm -f free >/dev/null
        [ $rc -ne 0 ] && echo "$out" | grep -q -- "--memory: .*/user.slice/bob is not delegated to you"'
    check "rootless, not delegated: nothing made in its cgroup, nothing moved out of it" sh -c '
        B=/sys/fs/cgroup/user.slice/bob
        [ -z "$(find $B -mindepth 1 -type d)" ] && [ -z "$(cat $B/cgroup.subtree_control)" ] &&
        grep -qx "$$" $B/cgroup.procs'
    check "rootless, not delegated: hull system reset -f" hull system reset -f
}

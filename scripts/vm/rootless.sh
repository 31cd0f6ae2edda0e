# Rootless hull on a pure cgroup v2 host (sourced by guest.sh after hull.sh; issue 22): an
# ordinary user with subordinate ids whose cgroup is delegated, as systemd's Delegate=yes
# makes one, gets limits; a user whose cgroup is not delegated gets a clear refusal. Each
# user's checks (rootless-user.sh) run in one login shell placed in the user's cgroup, as a
# session is: once hull has enabled controllers in the delegated cgroup no process may join
# it any more (cgroup v2's "no internal processes"), so a second login into it would fail,
# as it would under systemd.
chmod 1777 /tmp
printf 'alice:x:1000:1000::/home/alice:/bin/sh\nbob:x:1001:1001::/home/bob:/bin/sh\n' >> /etc/passwd
printf 'alice:x:1000:\nbob:x:1001:\n' >> /etc/group
printf 'alice:100000:65536\nbob:200000:65536\n' > /etc/subuid
cp /etc/subuid /etc/subgid
for u in alice:1000 bob:1001; do
    n=${u%:*} id=${u#*:}
    mkdir -p "/home/$n" "/run/user/$id"
    chown "$id:$id" "/home/$n" "/run/user/$id"
    chmod 700 "/run/user/$id"
done
# What systemd does for user@UID.service: a slice that enables some controllers for its
# children (not all: the user gets what it is given), the user's cgroup with its directory,
# cgroup.procs, cgroup.subtree_control and cgroup.threads chowned and the delegation mark
# user.delegate=1 set (Delegate=yes; systemd >= 251 sets trusted.delegate too, which the user
# cannot read). bob's is chowned to him but unmarked, as every unit's cgroup below
# user@UID.service is, also one without Delegate=yes (a terminal's vte-spawn-*.scope):
# his processes are not his to move, so no limits.
ul=/sys/fs/cgroup/user.slice
mkdir -p "$ul/alice" "$ul/bob"
echo "+cpu +memory +pids" > "$ul/cgroup.subtree_control"
for f in "" cgroup.procs cgroup.subtree_control cgroup.threads; do
    chown 1000:1000 "$ul/alice/$f"
    chown 1001:1001 "$ul/bob/$f"
done
setfattr -n user.delegate -v 1 "$ul/alice"
check "rootless: cgroupfs takes user.delegate from the cgroup's owner (docs/rootless.md)" sh -c '
    mkdir "$1/mark" && chown 1001:1001 "$1/mark" &&
    su bob -c "setfattr -n user.delegate -v 1 $1/mark" &&
    [ "$(getfattr --only-values -n user.delegate "$1/mark")" = 1 ]; r=$?
    rmdir "$1/mark"; exit $r' sh "$ul"
check "rootless: newuidmap and newgidmap are setuid root" sh -c '
    [ -u /usr/bin/newuidmap ] && [ -u /usr/bin/newgidmap ]'

# login NAME UID FUNCTION: rootless-user.sh's FUNCTION as NAME, in a login shell put into
# $ul/NAME first; its PASS/FAIL lines go to the console, its counts are added to ours.
login() {
    rm -f "/home/$1/counts"
    sh -c 'echo $$ > "$1/cgroup.procs" && exec su "$2" -c "$3"' sh "$ul/$1" "$1" \
        "export XDG_RUNTIME_DIR=/run/user/$2 LIMITED_OUT=/home/$1/limited.out
         cd; . /vm/lib.sh; . /vm/rootless-user.sh; $3; echo \$npass \$nfail > counts"
    if read -r p f < "/home/$1/counts"; then
        npass=$((npass + p)) nfail=$((nfail + f))
    else
        fail "rootless: $1's checks" "did not finish"
    fi
}
login alice 1000 delegated
login bob 1001 not_delegated
# No live process of either user (their ids or their ranges); zombies aside: the killed
# pause processes are children of this PID 1, a shell that reaps them only when it waits.
no_user_process() {
    left=$(for s in /proc/[0-9]*/status; do
        awk '/^State:/ {st = $2} /^Uid:/ {u = $2}
             END {if (st != "Z" && (u == 1000 || u == 1001 || u >= 100000)) print FILENAME}' \
            "$s" 2>/dev/null
    done)
    [ -z "$left" ] || { for f in $left; do head -n 9 "$f"; done; return 1; }
}
# busybox timeout's watcher (the checks' `limited`) sees its command gone within a second.
users_settled() { wait_for 10 no_user_process || no_user_process; }
check "rootless: no process of the users left" users_settled

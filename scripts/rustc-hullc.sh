#!/bin/sh
# RUSTC_WORKSPACE_WRAPPER of scripts/release.sh: adds $HULLC_LINK_FLAGS to the rustc run that
# links the hullc binary, and to nothing else. Like `cargo rustc -p hullc -- FLAGS`, but inside
# the one `cargo build` of all three programs: a separate `cargo rustc -p hullc` resolves
# features for hullc alone (serde_core, syn, rustix... differ), which rebuilt the whole
# dependency tree a second time. Cargo runs workspace members only through this wrapper, so
# the dependencies' fingerprints are those of a plain release build.
rustc=$1
shift
case " $* " in
*" --crate-name hullc "*"--crate-type bin "*)
    # shellcheck disable=SC2086 # the flags are words
    exec "$rustc" "$@" $HULLC_LINK_FLAGS
    ;;
esac
exec "$rustc" "$@"

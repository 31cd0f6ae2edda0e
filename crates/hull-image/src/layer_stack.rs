//! Paths in an image that is not mounted: its layers' snapshot directories, top layer first,
//! looked at as overlayfs would show them.
//!
//! A snapshot holds the image's symlinks as they are (`/etc -> /host/...` or `../../..`), and
//! the host would resolve them against its own root: a lookup that let the host follow one
//! would read (and a COPY that wrote through one would change) files outside the image. So a
//! lookup here never follows a symlink on the host: [`stat_in_layers`] refuses a path with a
//! symlink on the way (it is not a directory in the image), and [`resolve_in_layers`] does
//! what `openat2(RESOLVE_IN_ROOT)` does on a mounted root (hull's `cp`): it follows symlinks
//! itself, absolute ones from the image's root, `..` stopping at the root, at most 40 links.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Linux's limit on symlinks followed in one lookup (`MAXSYMLINKS`, ELOOP past it).
const MAX_LINKS: usize = 40;

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    crate::fsutil::lxattrs(p)
        .is_ok_and(|x| x.iter().any(|(k, _)| crate::userns::is_opaque_xattr(k)))
}

/// Metadata of `rel` in an image's layer stack (snapshot directories, top layer first), as
/// the container would see it: `None` when no layer has it, a whiteout or an opaque
/// directory above hides it, or something on the way is not a directory (a symlink there is
/// not followed: resolve the path with [`resolve_in_layers`] first).
/// Returns the file's path in its snapshot with its metadata.
pub fn stat_in_layers(tops_first: &[PathBuf], rel: &Path) -> Option<(PathBuf, fs::Metadata)> {
    let parents: Vec<Component<'_>> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for layer in tops_first {
        let mut cur = layer.clone();
        let mut complete = true;
        let mut hides_lower = false;
        for c in &parents {
            cur.push(c);
            let Ok(m) = fs::symlink_metadata(&cur) else {
                complete = false;
                break;
            };
            // The topmost entry of a parent decides: a whiteout, file or symlink there
            // hides whatever lower layers have below that name.
            if !m.is_dir() {
                return None;
            }
            hides_lower |= is_opaque(&cur);
        }
        if complete {
            let p = layer.join(rel);
            if let Ok(m) = fs::symlink_metadata(&p) {
                return (!is_whiteout(&m)).then_some((p, m));
            }
        }
        if hides_lower {
            return None;
        }
    }
    None
}

/// `rel` (relative to the image's root) with every symlink on the way resolved inside the
/// image, the last component included, as the kernel's `RESOLVE_IN_ROOT` would on the
/// mounted image: an absolute target starts again at the image's root, `..` never goes above
/// it, and a name that does not exist (yet) ends the lookup with the rest taken as written.
pub fn resolve_in_layers(tops_first: &[PathBuf], rel: &Path) -> io::Result<PathBuf> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, rel);
    let mut out = PathBuf::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(name) = todo.pop_front() {
        // `..` below a name that does not exist fails in the kernel (ENOENT); popping would
        // climb back into the image with the rest of a symlink's target unresolved.
        if name == ".." && missing {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("/{}/..: no such file or directory", out.display()),
            ));
        }
        if name == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&name);
        if missing {
            out = next;
            continue;
        }
        match stat_in_layers(tops_first, &next) {
            Some((p, m)) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "/{}: too many levels of symbolic links",
                        next.display()
                    )));
                }
                let target = fs::read_link(&p)?;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                push_front(&mut todo, &target);
            }
            Some(_) => out = next,
            None => {
                missing = true;
                out = next;
            }
        }
    }
    Ok(out)
}

/// Puts the components of `p` before the rest of the lookup (`.` and `/` dropped).
fn push_front(todo: &mut VecDeque<OsString>, p: &Path) {
    for c in p.components().rev() {
        match c {
            Component::Normal(n) => todo.push_front(n.to_os_string()),
            Component::ParentDir => todo.push_front("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_image() {
        let d = tempfile::tempdir().unwrap();
        let (top, low) = (d.path().join("top"), d.path().join("low"));
        fs::create_dir_all(low.join("data/real")).unwrap();
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(&top).unwrap();
        symlink("/etc", low.join("data/etclink")).unwrap();
        symlink("../../../../../../..", top.join("up")).unwrap();
        fs::create_dir_all(top.join("data")).unwrap();
        symlink("real", top.join("data/rel")).unwrap();
        symlink("loop", top.join("loop")).unwrap();
        symlink("nothere/../rel", top.join("data/trick")).unwrap();
        let layers = vec![top, low];
        let r = |p: &str| resolve_in_layers(&layers, Path::new(p)).unwrap();
        assert_eq!(r("data/etclink/passwd"), Path::new("etc/passwd"));
        assert_eq!(r("up/escaped"), Path::new("escaped"));
        assert_eq!(r("up/etc/../../x"), Path::new("x"));
        assert_eq!(r("data/rel/f"), Path::new("data/real/f"));
        // Past a missing name the rest is taken as written (callers normalise `..` first);
        // a `..` there (from a symlink's target) fails, as in the kernel, instead of climbing
        // back with the rest unresolved (`passwd -> nothere/../q`, `q -> /etc/shadow`).
        assert_eq!(r("data/new/f"), Path::new("data/new/f"));
        assert!(resolve_in_layers(&layers, Path::new("data/new/../rel")).is_err());
        assert!(resolve_in_layers(&layers, Path::new("data/trick")).is_err());
        assert!(resolve_in_layers(&layers, Path::new("loop/x")).is_err());
        // A symlink on the way is never followed on the host.
        assert!(stat_in_layers(&layers, Path::new("data/etclink/passwd")).is_none());
        assert!(stat_in_layers(&layers, Path::new("data/real")).is_some());
    }
}

//! `-u`/image `User` → numeric ids, read from the container's own
//! /etc/passwd and /etc/group (like docker: names mean the image's users).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unable to find user {0}: no matching entries in the container's /etc/passwd")]
    User(String),
    #[error("unable to find group {0}: no matching entries in the container's /etc/group")]
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn read_db(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    // A missing or unreadable file is an image without that database;
    // numeric ids still work.
    std::fs::read_to_string(rootfs.join("etc").join(file))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(String::from).collect())
        .collect()
}

/// Resolves `user[:group]` (names or numbers; empty means root).
pub fn resolve(rootfs: &Path, spec: &str) -> Result<User, Error> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let passwd = read_db(rootfs, "passwd");
    let entry = passwd
        .iter()
        .find(|e| e.len() >= 4 && (e[0] == u || e[2] == u));
    let (uid, mut gid, name, home) = match (entry, u.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse().map_err(|_| Error::User(u.into()))?,
            e[3].parse().map_err(|_| Error::User(u.into()))?,
            e[0].clone(),
            e.get(5).cloned().unwrap_or_else(|| "/".into()),
        ),
        (None, Ok(uid)) => (uid, 0, String::new(), "/".into()),
        (None, Err(_)) => return Err(Error::User(u.into())),
    };
    let groups = read_db(rootfs, "group");
    if let Some(g) = g {
        gid = match groups.iter().find(|e| e.len() >= 3 && e[0] == g) {
            Some(e) => e[2].parse().map_err(|_| Error::Group(g.into()))?,
            None => g.parse().map_err(|_| Error::Group(g.into()))?,
        };
    }
    // Supplementary groups: the user's memberships, only when no group was
    // forced (docker's behaviour).
    let additional_gids = if g.is_none() && !name.is_empty() {
        groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name))
            .filter_map(|e| e[2].parse().ok())
            .filter(|&x| x != gid)
            .collect()
    } else {
        Vec::new()
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1000:\nwheel:x:10:web\n",
        )
        .unwrap();
        let u = resolve(d.path(), "web").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/web"));
        assert_eq!(u.additional_gids, vec![10]);
        assert_eq!(resolve(d.path(), "web:wheel").unwrap().gid, 10);
        assert_eq!(resolve(d.path(), "").unwrap().uid, 0);
        assert_eq!(resolve(d.path(), "123:45").unwrap().gid, 45);
        assert!(resolve(d.path(), "nobody").is_err());
    }
}

//! `/etc/hosts` and `/etc/resolv.conf` contents for containers.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Fallback nameservers when the host has only loopback ones (docker does the same).
pub const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// One `/etc/hosts` line: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// An `--add-host NAME:IP` entry. `ip` `None` is docker's `host-gateway`: the gateway of the
/// container's network (an address of the host's that every container on it can reach);
/// attach resolves it before the lease is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub ip: Option<IpAddr>,
}

/// Renders a container's `/etc/hosts`: loopback lines, the `--add-host` entries (where docker
/// puts them), then `own` (the container itself), then every other container on its
/// networks, sorted by address.
pub fn render_hosts(own: Option<&HostEntry>, others: &[HostEntry], extra: &[ExtraHost]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for x in extra {
        if let Some(ip) = x.ip.filter(|_| valid_hostname(&x.name)) {
            out.push_str(&format!("{ip}\t{}\n", x.name));
        }
    }
    let mut line = |e: &HostEntry| {
        let names: Vec<&str> = e
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| valid_hostname(n))
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("{}\t{}\n", e.ip, names.join(" ")));
        }
    };
    if let Some(own) = own {
        line(own);
    }
    let mut others: Vec<&HostEntry> = others.iter().collect();
    others.sort_by_key(|e| e.ip);
    for e in others {
        if own.is_some_and(|o| o.ip == e.ip) {
            continue;
        }
        line(e);
    }
    out
}

/// A name that may appear in a hosts file (letters, digits, `-`, `.`, `_`).
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Renders a container's `/etc/resolv.conf` from the host's: loopback nameservers (127.0.0.0/8,
/// ::1, e.g. systemd-resolved's stub) cannot be reached from a container and are dropped;
/// `search`/`domain`/`options` are kept; with no nameserver left the fallbacks are used.
pub fn render_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let trimmed = line.trim();
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(addr) = words.next() else { continue };
                let ip = addr.split('%').next().unwrap_or(addr);
                match ip.parse::<IpAddr>() {
                    Ok(ip) if ip.is_loopback() => continue,
                    Ok(_) => {
                        servers += 1;
                        out.push_str(&format!("nameserver {addr}\n"));
                    }
                    Err(_) => continue,
                }
            }
            Some("search" | "domain" | "options" | "sortlist") => {
                out.push_str(trimmed);
                out.push('\n');
            }
            _ => {}
        }
    }
    if servers == 0 {
        for s in FALLBACK_NAMESERVERS {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

/// The host's resolver configuration for containers: `/etc/resolv.conf`, or, when that lists
/// only loopback servers (systemd-resolved's stub), `/run/systemd/resolve/resolv.conf`.
pub fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let has_real = |text: &str| {
        text.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("nameserver")
                && w.next()
                    .and_then(|a| a.split('%').next())
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|ip| !ip.is_loopback())
        })
    };
    if !has_real(&main) {
        if let Ok(resolved) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            if has_real(&resolved) {
                return render_resolv_conf(&resolved);
            }
        }
    }
    render_resolv_conf(&main)
}

/// Rewrites a file in place (truncate + write, never rename), so that a bind mount of it into a
/// container sees the new content.
pub fn write_in_place(path: &Path, content: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lists_self_then_others() {
        let a = HostEntry {
            ip: Ipv4Addr::new(10, 87, 0, 3),
            names: vec!["web".into(), "abc123".into()],
        };
        let b = HostEntry {
            ip: Ipv4Addr::new(10, 87, 0, 2),
            names: vec!["db".into(), "bad name".into()],
        };
        let extra = [
            ExtraHost {
                name: "db.example".into(),
                ip: Some("192.0.2.7".parse().expect("ip")),
            },
            ExtraHost {
                name: "v6".into(),
                ip: Some("2001:db8::1".parse().expect("ip")),
            },
        ];
        let text = render_hosts(Some(&a), &[a.clone(), b], &extra);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        let tail: Vec<&str> = text.lines().skip(6).collect();
        assert_eq!(
            tail,
            [
                "192.0.2.7\tdb.example",
                "2001:db8::1\tv6",
                "10.87.0.3\tweb abc123",
                "10.87.0.2\tdb"
            ]
        );
    }

    #[test]
    fn resolv_drops_loopback() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\n\
                    nameserver fe80::1%eth0\nsearch example.com\noptions edns0 trust-ad\n";
        assert_eq!(
            render_resolv_conf(host),
            "nameserver 192.0.2.1\nnameserver fe80::1%eth0\nsearch example.com\noptions edns0 trust-ad\n"
        );
        let only_stub = "nameserver 127.0.0.53\nsearch lan\n";
        assert_eq!(
            render_resolv_conf(only_stub),
            "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn in_place_keeps_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("hosts");
        write_in_place(&p, "a long first version\n").expect("w1");
        let ino = std::fs::metadata(&p).expect("m").ino();
        write_in_place(&p, "short\n").expect("w2");
        assert_eq!(std::fs::metadata(&p).expect("m").ino(), ino);
        assert_eq!(std::fs::read_to_string(&p).expect("r"), "short\n");
    }
}

//! nftables rules, generated as `nft -j` JSON and applied through a [`Nft`] runner.
//!
//! Everything lives in one `inet` table (default `hull`) with base chains only, no jump rules,
//! so creating them is idempotent (`add table`/`add chain`). Each rule carries a comment tag:
//! `n:<network>` for a network's masquerade rules, `c:<hash>` for a container's published
//! ports. An attach is one `nft` run and needs no listing first: the network's masquerade
//! rules live in a base chain of their own (`n-<network>`) that the batch flushes and refills,
//! which is idempotent and atomic (nft batches commit as one transaction). Teardown lists the
//! table and deletes rules by handle; reset deletes the table.
//!
//! - `prerouting` (nat, dstnat) and `output` (nat, -100): published ports,
//!   `[ip daddr IP] fib daddr type local tcp dport HOST dnat ip to CTR_IP:CTR`; `output` makes
//!   connections from the host itself (127.0.0.1:HOST, the bridge IP) work.
//! - `n-<network>` (nat, postrouting hook, srcnat), per network: outbound masquerade
//!   (`ip saddr NET ip daddr != NET masquerade`), hairpin (`ct status dnat ip saddr NET
//!   ip daddr NET masquerade`: a container reaching a published port of its own network) and
//!   `oifname BRIDGE ip saddr 127.0.0.0/8 masquerade`: a DNATed 127.0.0.1 connection leaves with
//!   the gateway's address, which with `route_localnet=1` on the bridge lets it be routed at all.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::ports::PortMapping;
use crate::subnet::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("run nft: {0} (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("nft {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("nft output: {0}")]
    Output(#[source] serde_json::Error),
}

/// Runs nft: the kernel boundary, faked in tests.
pub trait Nft: Send + Sync {
    /// Applies one batch (`{"nftables": [...]}`) atomically.
    fn apply(&self, batch: &Value) -> Result<(), NftError>;
    /// `nft -j list table inet NAME`, or `None` when there is no such table.
    fn list_table(&self, table: &str) -> Result<Option<Value>, NftError>;
}

/// The real runner: the `nft` binary with JSON on stdin.
#[derive(Debug, Clone)]
pub struct NftCommand {
    pub binary: String,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            binary: "nft".to_string(),
        }
    }
}

impl Nft for NftCommand {
    fn apply(&self, batch: &Value) -> Result<(), NftError> {
        let mut child = Command::new(&self.binary)
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(batch.to_string().as_bytes())
                .map_err(NftError::Spawn)?;
        }
        let out = child.wait_with_output().map_err(NftError::Spawn)?;
        if !out.status.success() {
            return Err(NftError::Failed {
                what: "-j -f -".to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn list_table(&self, table: &str) -> Result<Option<Value>, NftError> {
        let out = Command::new(&self.binary)
            .args(["-j", "list", "table", "inet", table])
            .output()
            .map_err(NftError::Spawn)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(NftError::Failed {
                what: format!("list table inet {table}"),
                stderr,
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(NftError::Output)
    }
}

/// Comment tag of a network's rules.
pub fn network_tag(network: &str) -> String {
    format!("n:{network}")
}

/// Comment tag of a container's port rules on a network (a hash keeps it under nft's
/// 128-byte comment limit).
pub fn container_tag(network: &str, container_id: &str) -> String {
    format!("c:{:016x}", crate::fnv1a(&[network, container_id]))
}

fn base(table: &str) -> Vec<Value> {
    let chain = |name: &str, kind: &str, hook: &str, prio: i32| {
        json!({"add": {"chain": {"family": "inet", "table": table, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}})
    };
    vec![
        json!({"add": {"table": {"family": "inet", "name": table}}}),
        chain("prerouting", "nat", "prerouting", -100),
        chain("output", "nat", "output", -100),
        chain("postrouting", "nat", "postrouting", 100),
    ]
}

fn rule(table: &str, chain: &str, tag: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": table, "chain": chain,
        "comment": tag, "expr": expr}}})
}

fn ip_match(field: &str, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": field}},
        "right": right}})
}

fn prefix(net: Subnet) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix()}})
}

/// The base chain holding a network's masquerade rules.
pub fn network_chain(network: &str) -> String {
    format!("n-{network}")
}

/// The commands that create the base chains and (re)write a network's masquerade rules: its
/// chain is added (a no-op when it exists) and flushed before the rules, so the batch can be
/// applied at every attach without listing the table first.
pub fn network_rules(table: &str, network: &str, bridge: &str, subnet: Subnet) -> Vec<Value> {
    let tag = network_tag(network);
    let chain = network_chain(network);
    let mut batch = base(table);
    batch.push(
        json!({"add": {"chain": {"family": "inet", "table": table, "name": chain,
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
    );
    batch.push(json!({"flush": {"chain": {"family": "inet", "table": table, "name": chain}}}));
    batch.push(rule(
        table,
        &chain,
        &tag,
        vec![
            ip_match("saddr", "==", prefix(subnet)),
            ip_match("daddr", "!=", prefix(subnet)),
            json!({"masquerade": null}),
        ],
    ));
    batch.push(rule(
        table,
        &chain,
        &tag,
        vec![
            json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
            ip_match("saddr", "==", prefix(subnet)),
            ip_match("daddr", "==", prefix(subnet)),
            json!({"masquerade": null}),
        ],
    ));
    batch.push(rule(
        table,
        &chain,
        &tag,
        vec![
            json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": bridge}}),
            ip_match(
                "saddr",
                "==",
                prefix(Subnet::new(Ipv4Addr::new(127, 0, 0, 0), 8)),
            ),
            json!({"masquerade": null}),
        ],
    ));
    batch
}

/// The commands that publish a container's ports (DNAT in prerouting and output); they expect
/// the base chains (apply them after [`network_rules`], in the same batch).
pub fn port_rules(
    table: &str,
    tag: &str,
    container_ip: Ipv4Addr,
    ports: &[PortMapping],
) -> Vec<Value> {
    let mut batch = Vec::new();
    for p in ports {
        let mut expr = vec![
            json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}},
            "right": "ipv4"}}),
        ];
        if let Some(ip) = p.host_ip {
            expr.push(ip_match("daddr", "==", json!(ip.to_string())));
        }
        expr.push(json!({"match": {"op": "==",
            "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}));
        expr.push(json!({"match": {"op": "==",
            "left": {"payload": {"protocol": p.protocol.as_str(), "field": "dport"}},
            "right": p.host_port}}));
        expr.push(
            json!({"dnat": {"family": "ip", "addr": container_ip.to_string(),
            "port": p.container_port}}),
        );
        for chain in ["prerouting", "output"] {
            batch.push(rule(table, chain, tag, expr.clone()));
        }
    }
    batch
}

/// From a `list table` answer, the deletions of every rule whose comment `matches`.
pub fn delete_tagged(listing: &Value, matches: impl Fn(&str) -> bool) -> Vec<Value> {
    let items = listing
        .get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|r| {
            r.get("comment")
                .and_then(Value::as_str)
                .is_some_and(&matches)
        })
        .map(|r| {
            json!({"delete": {"rule": {"family": r["family"], "table": r["table"],
                "chain": r["chain"], "handle": r["handle"]}}})
        })
        .collect()
}

/// Deletes the rules tagged `tag` from `table` (nothing when the table is gone).
pub fn remove_tagged(nft: &dyn Nft, table: &str, tag: &str) -> Result<(), NftError> {
    let Some(listing) = nft.list_table(table)? else {
        return Ok(());
    };
    let deletes = delete_tagged(&listing, |c| c == tag);
    if deletes.is_empty() {
        return Ok(());
    }
    nft.apply(&json!({ "nftables": deletes }))
}

/// Deletes a network's rules: its chain, and rules tagged for it in other chains (where they
/// were before they had a chain of their own). Nothing when the table is gone.
pub fn remove_network(nft: &dyn Nft, table: &str, network: &str) -> Result<(), NftError> {
    let Some(listing) = nft.list_table(table)? else {
        return Ok(());
    };
    let tag = network_tag(network);
    let chain = network_chain(network);
    let mut batch = delete_tagged(&listing, |c| c == tag);
    let has_chain = listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["chain"]["name"] == chain.as_str());
    if has_chain {
        let id = json!({"family": "inet", "table": table, "name": chain});
        // A chain must be empty to be deleted; the flush is part of the same transaction.
        batch.retain(|d| d["delete"]["rule"]["chain"] != chain.as_str());
        batch.push(json!({"flush": {"chain": id.clone()}}));
        batch.push(json!({"delete": {"chain": id}}));
    }
    if batch.is_empty() {
        return Ok(());
    }
    nft.apply(&json!({ "nftables": batch }))
}

/// Deletes the whole table if it exists.
pub fn remove_table(nft: &dyn Nft, table: &str) -> Result<(), NftError> {
    if nft.list_table(table)?.is_none() {
        return Ok(());
    }
    nft.apply(&json!({"nftables": [{"delete": {"table": {"family": "inet", "name": table}}}]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_batch() {
        let v = network_rules(
            "hull",
            "bridge",
            "hull0",
            "10.87.0.0/24".parse().expect("net"),
        );
        let b = &v;
        assert_eq!(
            b[0],
            json!({"add": {"table": {"family": "inet", "name": "hull"}}})
        );
        assert_eq!(b[1]["add"]["chain"]["hook"], "prerouting");
        assert_eq!(b[2]["add"]["chain"]["hook"], "output");
        assert_eq!(b[3]["add"]["chain"]["type"], "nat");
        assert_eq!(b[4]["add"]["chain"]["name"], "n-bridge");
        assert_eq!(b[4]["add"]["chain"]["hook"], "postrouting");
        assert_eq!(b[5]["flush"]["chain"]["name"], "n-bridge");
        let masq = &b[6]["add"]["rule"];
        assert_eq!(masq["chain"], "n-bridge");
        assert_eq!(masq["comment"], "n:bridge");
        assert_eq!(
            masq["expr"][0],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "10.87.0.0", "len": 24}}}})
        );
        assert_eq!(masq["expr"][1]["match"]["op"], "!=");
        assert_eq!(masq["expr"][2], json!({"masquerade": null}));
        let local = &b[8]["add"]["rule"]["expr"];
        assert_eq!(local[0]["match"]["right"], "hull0");
        assert_eq!(local[1]["match"]["right"]["prefix"]["addr"], "127.0.0.0");
    }

    #[test]
    fn port_batch() {
        let ports: Vec<PortMapping> = ["127.0.0.1:8080:80", "5353:53/udp"]
            .iter()
            .map(|s| s.parse().expect("port"))
            .collect();
        let v = port_rules("hull", "c:1", Ipv4Addr::new(10, 87, 0, 2), &ports);
        let rules: Vec<&Value> = v.iter().map(|r| &r["add"]["rule"]).collect();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0]["chain"], "prerouting");
        assert_eq!(rules[1]["chain"], "output");
        assert_eq!(rules[0]["expr"], rules[1]["expr"]);
        let e = rules[0]["expr"].as_array().expect("expr");
        assert_eq!(e[1]["match"]["right"], "127.0.0.1");
        assert_eq!(e[2]["match"]["left"]["fib"]["result"], "type");
        assert_eq!(
            e[3]["match"]["left"]["payload"],
            json!({"protocol": "tcp", "field": "dport"})
        );
        assert_eq!(e[3]["match"]["right"], 8080);
        assert_eq!(
            e[4],
            json!({"dnat": {"family": "ip", "addr": "10.87.0.2", "port": 80}})
        );
        let udp = rules[2]["expr"].as_array().expect("expr");
        assert_eq!(udp.len(), 4, "no daddr match without a host ip");
        assert_eq!(udp[2]["match"]["left"]["payload"]["protocol"], "udp");
    }

    #[test]
    fn deletes_by_tag() {
        let listing = json!({"nftables": [
            {"metainfo": {}},
            {"table": {"family": "inet", "name": "hull", "handle": 1}},
            {"rule": {"family": "inet", "table": "hull", "chain": "prerouting", "handle": 7,
                "comment": "c:1", "expr": []}},
            {"rule": {"family": "inet", "table": "hull", "chain": "output", "handle": 8,
                "comment": "c:2", "expr": []}},
            {"rule": {"family": "inet", "table": "hull", "chain": "output", "handle": 9,
                "expr": []}},
        ]});
        let d = delete_tagged(&listing, |c| c == "c:1");
        assert_eq!(
            d,
            vec![
                json!({"delete": {"rule": {"family": "inet", "table": "hull",
                "chain": "prerouting", "handle": 7}}})
            ]
        );
        assert_eq!(container_tag("n", "a"), container_tag("n", "a"));
        assert_ne!(container_tag("n", "a"), container_tag("n", "b"));
        assert!(container_tag("n", &"x".repeat(200)).len() < 32);
    }
}

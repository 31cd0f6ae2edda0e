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
//! - `f-<network>` (filter, forward hook), per network: isolation, as docker's
//!   DOCKER-ISOLATION-STAGE-1/2 chains: `iifname BRIDGE oifname != BRIDGE oifname @bridges
//!   ct status & dnat == 0 drop`. The set `bridges` holds the bridge of every network of the
//!   table, so a container cannot open a connection into another hull network, while traffic
//!   to the outside, to the host (input, not forward) and to published ports (DNATed, which
//!   covers the replies too: the status is the connection's) passes.

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
        json!({"add": {"set": {"family": "inet", "table": table, "name": BRIDGES_SET,
            "type": "ifname"}}}),
    ]
}

/// The set of the bridges of every network in the table (isolation drops what is forwarded
/// from one of them to another).
pub const BRIDGES_SET: &str = "bridges";

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

/// The base chain holding a network's isolation rule.
pub fn isolation_chain(network: &str) -> String {
    format!("f-{network}")
}

/// Adds (a no-op when it exists) and flushes a network's base chain.
fn fresh_chain(table: &str, name: &str, kind: &str, hook: &str, prio: i32) -> [Value; 2] {
    [
        json!({"add": {"chain": {"family": "inet", "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept"}}}),
        json!({"flush": {"chain": {"family": "inet", "table": table, "name": name}}}),
    ]
}

fn ifname_match(key: &str, op: &str, right: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": right}})
}

/// A network's isolation: its bridge joins the set of bridges, and its chain drops what is
/// forwarded from it to another bridge of the set, unless DNAT (a published port) sent it.
fn isolation_rules(table: &str, network: &str, bridge: &str) -> Vec<Value> {
    let chain = isolation_chain(network);
    let mut batch = vec![json!({"add": {"element": {"family": "inet", "table": table,
        "name": BRIDGES_SET, "elem": [bridge]}}})];
    batch.extend(fresh_chain(table, &chain, "filter", "forward", 0));
    let set = format!("@{BRIDGES_SET}");
    batch.push(rule(
        table,
        &chain,
        &network_tag(network),
        vec![
            ifname_match("iifname", "==", bridge),
            ifname_match("oifname", "!=", bridge),
            ifname_match("oifname", "==", &set),
            json!({"match": {"op": "==",
                "left": {"&": [{"ct": {"key": "status"}}, "dnat"]}, "right": 0}}),
            json!({"drop": null}),
        ],
    ));
    batch
}

/// The commands that create the base chains and (re)write a network's masquerade rules: its
/// chain is added (a no-op when it exists) and flushed before the rules, so the batch can be
/// applied at every attach without listing the table first.
pub fn network_rules(table: &str, network: &str, bridge: &str, subnet: Subnet) -> Vec<Value> {
    let tag = network_tag(network);
    let chain = network_chain(network);
    let mut batch = base(table);
    batch.extend(fresh_chain(table, &chain, "nat", "postrouting", 100));
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
            ifname_match("oifname", "==", bridge),
            ip_match(
                "saddr",
                "==",
                prefix(Subnet::new(Ipv4Addr::new(127, 0, 0, 0), 8)),
            ),
            json!({"masquerade": null}),
        ],
    ));
    batch.extend(isolation_rules(table, network, bridge));
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

/// Deletes a network's rules: its chains, its bridge's element of the bridges set, and rules
/// tagged for it in other chains (where they were before they had chains of their own).
/// Nothing when the table is gone.
pub fn remove_network(
    nft: &dyn Nft,
    table: &str,
    network: &str,
    bridge: &str,
) -> Result<(), NftError> {
    let Some(listing) = nft.list_table(table)? else {
        return Ok(());
    };
    let tag = network_tag(network);
    let mut batch = delete_tagged(&listing, |c| c == tag);
    let items = listing["nftables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for chain in [network_chain(network), isolation_chain(network)] {
        if !items.iter().any(|i| i["chain"]["name"] == chain.as_str()) {
            continue;
        }
        let id = json!({"family": "inet", "table": table, "name": chain});
        // A chain must be empty to be deleted; the flush is part of the same transaction.
        batch.retain(|d| d["delete"]["rule"]["chain"] != chain.as_str());
        batch.push(json!({"flush": {"chain": id.clone()}}));
        batch.push(json!({"delete": {"chain": id}}));
    }
    // Deleting an element that is not there fails the whole batch: only when listed.
    let in_set = items.iter().any(|i| {
        i["set"]["name"] == BRIDGES_SET
            && i["set"]["elem"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e == bridge))
    });
    if in_set {
        batch.push(
            json!({"delete": {"element": {"family": "inet", "table": table,
            "name": BRIDGES_SET, "elem": [bridge]}}}),
        );
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
        assert_eq!(b[4]["add"]["set"]["name"], BRIDGES_SET);
        assert_eq!(b[4]["add"]["set"]["type"], "ifname");
        assert_eq!(b[5]["add"]["chain"]["name"], "n-bridge");
        assert_eq!(b[5]["add"]["chain"]["hook"], "postrouting");
        assert_eq!(b[6]["flush"]["chain"]["name"], "n-bridge");
        let masq = &b[7]["add"]["rule"];
        assert_eq!(masq["chain"], "n-bridge");
        assert_eq!(masq["comment"], "n:bridge");
        assert_eq!(
            masq["expr"][0],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "10.87.0.0", "len": 24}}}})
        );
        assert_eq!(masq["expr"][1]["match"]["op"], "!=");
        assert_eq!(masq["expr"][2], json!({"masquerade": null}));
        let local = &b[9]["add"]["rule"]["expr"];
        assert_eq!(local[0]["match"]["right"], "hull0");
        assert_eq!(local[1]["match"]["right"]["prefix"]["addr"], "127.0.0.0");
        assert_eq!(
            b[10],
            json!({"add": {"element": {"family": "inet", "table": "hull", "name": "bridges",
                "elem": ["hull0"]}}})
        );
        assert_eq!(b[11]["add"]["chain"]["name"], "f-bridge");
        assert_eq!(b[11]["add"]["chain"]["hook"], "forward");
        assert_eq!(b[11]["add"]["chain"]["type"], "filter");
        assert_eq!(b[12]["flush"]["chain"]["name"], "f-bridge");
        let iso = b[13]["add"]["rule"]["expr"].as_array().expect("expr");
        assert_eq!(iso[0]["match"]["right"], "hull0");
        assert_eq!(iso[1]["match"]["op"], "!=");
        assert_eq!(iso[2]["match"]["right"], "@bridges");
        assert_eq!(iso[4], json!({"drop": null}));
        assert_eq!(b.len(), 14);
    }

    #[test]
    fn removes_chains_and_set_element() {
        let listing = json!({"nftables": [
            {"set": {"family": "inet", "table": "hull", "name": "bridges", "elem": ["hull1"]}},
            {"chain": {"family": "inet", "table": "hull", "name": "n-net"}},
            {"chain": {"family": "inet", "table": "hull", "name": "f-net"}},
        ]});
        struct Once(Value, std::sync::Mutex<Vec<Value>>);
        impl Nft for Once {
            fn apply(&self, batch: &Value) -> Result<(), NftError> {
                self.1.lock().expect("lock").push(batch.clone());
                Ok(())
            }
            fn list_table(&self, _: &str) -> Result<Option<Value>, NftError> {
                Ok(Some(self.0.clone()))
            }
        }
        let n = Once(listing, Default::default());
        remove_network(&n, "hull", "net", "hull1").expect("remove");
        let applied = n.1.lock().expect("lock").clone();
        let cmds = applied[0]["nftables"].as_array().expect("batch").clone();
        let deleted: Vec<&Value> = cmds.iter().filter_map(|c| c.get("delete")).collect();
        assert_eq!(deleted[0]["chain"]["name"], "n-net");
        assert_eq!(deleted[1]["chain"]["name"], "f-net");
        assert_eq!(deleted[2]["element"]["elem"], json!(["hull1"]));
        // Another bridge's element is not there: no delete of it (it would fail the batch).
        n.1.lock().expect("lock").clear();
        remove_network(&n, "hull", "net", "hull9").expect("remove");
        let applied = n.1.lock().expect("lock").clone();
        assert!(!applied[0].to_string().contains("element"));
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

//! Images from and to containers, and live changes: `POST /commit`, `GET
//! /containers/{id}/export`, `POST /images/create?fromSrc=-` (import) and `POST
//! /containers/{id}/update`. Each is hull-engine's (`commit`, `export`, `import`,
//! `update_with_policy`), as `hull commit|export|import|update` are.

use std::sync::Arc;

use hull_engine::image::{CommitOptions, ImportOptions};
use hull_engine::manage::Resources;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::create::RestartPolicy;
use crate::error::{chain, ApiError};
use crate::http::{self, JsonLines, Req, Resp, TryChanWriter};
use crate::routes::blocking;
use crate::server::App;

/// `repo` + `tag` as one `name[:tag]`; none when `repo` is empty (a dangling image).
fn image_name(req: &Req) -> Result<Option<String>, ApiError> {
    let repo = req.q("repo").unwrap_or("");
    let tag = req.q("tag").unwrap_or("");
    if repo.is_empty() {
        if !tag.is_empty() {
            return Err(ApiError::bad(format!("tag {tag:?} given without repo")));
        }
        return Ok(None);
    }
    let name = match tag {
        "" => repo.to_string(),
        t => format!("{repo}:{t}"),
    };
    hull_image::create::parse_new_name(&name).map_err(|e| {
        ApiError::bad(format!(
            "invalid reference format: repo/tag {name:?}: {}",
            chain(&e)
        ))
    })?;
    Ok(Some(name))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
pub(crate) async fn commit(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let Some(ctr) = req.q("container").filter(|c| !c.is_empty()) else {
        return Err(ApiError::bad(
            "the container to commit (container) is required",
        ));
    };
    let o = CommitOptions {
        name: image_name(req)?,
        changes: req.all("changes"),
        message: req.q("comment").filter(|c| !c.is_empty()).map(String::from),
        author: req.q("author").filter(|c| !c.is_empty()).map(String::from),
        // docker ≥ 1.13 pauses unless told not to.
        pause: req.q("pause").is_none_or(|p| p.is_empty()) || req.flag("pause"),
    };
    let ctr = ctr.to_string();
    let img = blocking(app, move |e| {
        e.find(&ctr)?;
        e.commit(&ctr, &o).map_err(bad_image)
    })
    .await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": img.id.to_string()}),
    ))
}

/// A bad `changes` line or tarball is the client's (400), the rest as the engine's.
fn bad_image(e: hull_engine::Error) -> ApiError {
    use hull_image::CreateError as C;
    match &e {
        hull_engine::Error::Create(
            C::Change(_) | C::Reference(_) | C::DigestName(_) | C::Tar(_) | C::Layer(_),
        ) => ApiError::bad(chain(&e)),
        _ => e.into(),
    }
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
pub(crate) async fn export(app: &Arc<App>, id: &str) -> Result<Resp, ApiError> {
    let id = id.to_string();
    // The container is looked up first, so an unknown one is a 404, not a broken stream.
    let key = id.clone();
    blocking(app, move |e| Ok(e.find(&key).map(drop)?)).await?;
    let (tx, resp) = http::try_stream("application/x-tar");
    let engine = app.engine.clone();
    tokio::task::spawn_blocking(move || {
        let fail = tx.clone();
        let w = std::io::BufWriter::with_capacity(1 << 20, TryChanWriter(tx));
        // The 200 is out: a failure midway can only abort the stream, which the client
        // sees as a broken transfer rather than a short tar.
        if let Err(err) = engine.export(&id, w) {
            let m = chain(&err);
            eprintln!("hull system service: export of {id}: {m}");
            TryChanWriter::fail(&fail, m);
        }
    });
    Ok(resp)
}

/// `POST /images/create?fromSrc=-`: the request body is a root filesystem tarball.
pub(crate) async fn import(app: &Arc<App>, req: &mut Req) -> Result<Resp, ApiError> {
    let src = req.q("fromSrc").unwrap_or("").to_string();
    if src != "-" {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "fromSrc {src:?}: hull imports only from the request body (fromSrc=-); \
                 download the tarball and import the file"
            ),
        ));
    }
    let platform = match req.q("platform").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            p.parse()
                .map_err(|_| ApiError::bad(format!("invalid platform {p:?}")))?,
        ),
    };
    let o = ImportOptions {
        name: image_name(req)?,
        changes: req.all("changes"),
        message: req.q("message").filter(|m| !m.is_empty()).map(String::from),
        platform,
        source: "stdin".into(),
    };
    let tmp = crate::body_file::to_temp_file(req, &app.root).await?;
    let id = blocking(app, move |e| {
        let f = tmp
            .reopen()
            .map_err(|err| ApiError::internal(format!("cannot read the body back: {err}")))?;
        Ok(e.import(f, &o).map_err(bad_image)?.id.to_string())
    })
    .await?;
    let (tx, resp) = http::stream("application/json");
    tokio::task::spawn_blocking(move || {
        JsonLines(tx).status(&id);
    });
    Ok(resp)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateBody {
    memory: i64,
    memory_swap: i64,
    memory_reservation: i64,
    kernel_memory: i64,
    nano_cpus: i64,
    cpu_quota: i64,
    cpu_period: i64,
    cpu_shares: i64,
    cpuset_cpus: String,
    cpuset_mems: String,
    blkio_weight: i64,
    pids_limit: Option<i64>,
    restart_policy: Option<RestartPolicy>,
}

impl UpdateBody {
    /// The resources hull can change; a field it cannot is refused by name (docker sends
    /// zeros for what was not asked).
    fn resources(&self) -> Result<Resources, ApiError> {
        let unsupported = [
            ("MemoryReservation", self.memory_reservation != 0),
            ("KernelMemory", self.kernel_memory != 0),
            ("CpuShares", self.cpu_shares != 0),
            ("CpusetCpus", !self.cpuset_cpus.is_empty()),
            ("CpusetMems", !self.cpuset_mems.is_empty()),
            ("BlkioWeight", self.blkio_weight != 0),
            // -1 (unlimited swap) is what hull gives anyway.
            ("MemorySwap", !matches!(self.memory_swap, 0 | -1)),
        ];
        if let Some((f, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(ApiError::bad(format!(
                "{f} cannot be updated by hull (Memory, NanoCpus, CpuQuota/CpuPeriod, \
                 PidsLimit and RestartPolicy can)"
            )));
        }
        if self.memory != 0 && self.memory < hull_engine::opts::MIN_MEMORY {
            return Err(ApiError::bad("Minimum memory limit allowed is 6MB"));
        }
        // A period alone (`docker update --cpu-period N`) would change nothing: hull's
        // limit is a number of CPUs, the period only scales a quota given with it.
        if self.cpu_period != 0 && self.cpu_quota == 0 {
            return Err(ApiError::bad(
                "CpuPeriod cannot be updated by hull without CpuQuota (give both, or NanoCpus)",
            ));
        }
        let cpus = match (self.nano_cpus, self.cpu_quota, self.cpu_period) {
            (0, 0, _) => None,
            (n, 0, _) if n > 0 => Some(n as f64 / 1e9),
            (0, q, p) if q > 0 => Some(q as f64 / if p > 0 { p as f64 } else { 100_000.0 }),
            _ => {
                return Err(ApiError::bad(
                    "NanoCpus and CpuQuota: give one, positive (docker refuses both too)",
                ))
            }
        };
        Ok(Resources {
            memory: (self.memory != 0).then_some(self.memory),
            cpus,
            pids_limit: self.pids_limit.filter(|p| *p != 0),
        })
    }
}

/// `POST /containers/{id}/update`: `{"Warnings": []}`.
pub(crate) async fn update(app: &Arc<App>, id: &str, req: &mut Req) -> Result<Resp, ApiError> {
    let b: UpdateBody = req.json().await?;
    let res = b.resources()?;
    let policy = b.restart_policy.filter(|p| !p.name.is_empty());
    let restart = policy
        .as_ref()
        .map(crate::create::restart_policy)
        .transpose()?;
    let id = id.to_string();
    blocking(app, move |e| {
        let r = e.find(&id)?;
        e.update_with_policy(&r, &res, restart.as_ref())?;
        if let Some(p) = policy {
            crate::create::store_restart_policy(e, &r, p)?;
        }
        Ok(())
    })
    .await?;
    Ok(http::ok_json(&json!({"Warnings": []})))
}

#[cfg(test)]
mod tests {
    use super::UpdateBody;

    fn resources(v: serde_json::Value) -> Result<super::Resources, String> {
        let b: UpdateBody = serde_json::from_value(v).map_err(|e| e.to_string())?;
        b.resources().map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn cpu_period_alone_is_refused_by_name() {
        let e = resources(serde_json::json!({"CpuPeriod": 50000})).err();
        assert!(
            e.as_deref().is_some_and(|e| e.contains("CpuPeriod")),
            "{e:?}"
        );
        let e = resources(serde_json::json!({"NanoCpus": 1_000_000_000, "CpuPeriod": 50000}));
        assert!(e.is_err());
        let r = resources(serde_json::json!({"CpuQuota": 25000, "CpuPeriod": 50000}));
        assert_eq!(r.ok().and_then(|r| r.cpus), Some(0.5));
    }
}

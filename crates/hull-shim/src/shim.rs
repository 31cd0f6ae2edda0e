//! containerd's shim v2 process contract: `start` (spawn the long-lived
//! shim, print its address), `delete` (clean up after a dead shim) and the
//! serving process itself.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Config, DeleteResponse, ExitSignal, Flags, StartOpts};
use log::warn;

use crate::events::Publisher;
use crate::hullc::Hullc;
use crate::mount;
use crate::reaper::Reaper;
use crate::service::{runtime_from_options, systemd_cgroup_from_options, timestamp, Service};

pub const RUNTIME_ID: &str = "io.containerd.hull.v2";

/// Directory for the shim's socket instead of `/run/containerd/s` (for
/// `hull`, which runs the shim without containerd).
pub const SOCKET_DIR_ENV: &str = "HULL_SHIM_SOCKET_DIR";

/// The annotation containerd's CRI puts on a pod's sandbox and containers
/// (the sandbox's own id on the sandbox).
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// The pod a bundle's container belongs to, from its `config.json`
/// annotations; `None` outside CRI or when the config cannot be read (the
/// Create that follows reports that).
pub fn sandbox_id(config: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let data = std::fs::read(config).ok()?;
    let spec: Spec = serde_json::from_slice(&data).ok()?;
    spec.annotations
        .get(SANDBOX_ID_ANNOTATION)
        .filter(|s| !s.is_empty())
        .cloned()
}

pub struct HullShim {
    namespace: String,
    id: String,
    bundle: String,
    exit: Arc<ExitSignal>,
}

/// The `start` action, answered with the plain socket address.
///
/// containerd-shim 0.12 answers `start` with a JSON object (or the 2.3
/// bootstrap protobuf), which containerd 1.6 takes for the address itself
/// ("dial unix {\"address\":...}"). Every containerd release accepts the
/// plain `unix://...` address, so the binary handles `start` here.
pub fn start_plain(flags: &Flags) -> containerd_shim::Result<String> {
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        socket_dir: std::env::var(SOCKET_DIR_ENV).ok().filter(|d| !d.is_empty()),
        ..Default::default()
    };
    let mut config = Config::default();
    let mut shim = <HullShim as containerd_shim::Shim>::new(RUNTIME_ID, flags, &mut config);
    containerd_shim::Shim::start_shim(&mut shim, opts)
}

fn shim_err(msg: String) -> containerd_shim::Error {
    containerd_shim::Error::Other(msg)
}

impl containerd_shim::Shim for HullShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        // We reap ourselves (hullc runs are waited for by pid, container
        // exits are recorded), so the library's reaper must stay off.
        config.no_reaper = true;
        HullShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // One shim per pod under CRI (as containerd-shim-runc-v2): the
        // grouping is the sandbox id, and a container whose pod's shim
        // already serves joins it. Anything else (hull's, ctr's containers)
        // gets its own shim.
        let grouping = sandbox_id(Path::new("config.json")).unwrap_or_else(|| opts.id.clone());
        let address = opts.socket_address(&grouping);
        let path = address.strip_prefix("unix://").unwrap_or(&address);
        if grouping != opts.id && UnixStream::connect(path).is_ok() {
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        }
        // Nobody answers there: a socket file left by a shim that died would
        // make the new shim's bind fail.
        let _ = std::fs::remove_file(path);
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir()
                .map_err(|e| shim_err(e.to_string()))?
                .to_string_lossy()
                .into_owned()
        } else {
            self.bundle.clone()
        };
        let opts = containerd_shim::util::read_options(&bundle).ok();
        let (bin, root) = runtime_from_options(opts.as_ref(), &self.namespace);
        let reaper = Reaper::start(false).map_err(|e| shim_err(e.to_string()))?;
        let hullc = Hullc::new(bin, root, reaper)
            .with_systemd_cgroup(systemd_cgroup_from_options(opts.as_ref()));
        if let Err(e) = hullc.delete(&self.id, true) {
            warn!("delete {}: {e}", self.id);
        }
        if let Err(e) = mount::unmount_all(&Path::new(&bundle).join("rootfs")) {
            warn!("{e}");
        }
        Ok(api::DeleteResponse {
            pid: 0,
            // Like runc's shim: the container died with the shim (SIGKILL).
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> Service {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        // Only reached through containerd_shim::run, which hull does not use
        // for serving (see serve.rs); kept so the trait stays complete.
        let reaper = Arc::new(Reaper::default());
        Service::new(
            self.namespace.clone(),
            Publisher::new(Some(address)),
            reaper,
            Arc::clone(&self.exit),
        )
    }
}

impl HullShim {
    pub fn exit_signal(&self) -> Arc<ExitSignal> {
        Arc::clone(&self.exit)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sandbox_id_from_annotations() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("config.json");
        assert_eq!(sandbox_id(&cfg), None, "no config");
        std::fs::write(&cfg, r#"{"ociVersion":"1.0.2"}"#).unwrap();
        assert_eq!(sandbox_id(&cfg), None, "no annotations");
        std::fs::write(
            &cfg,
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"abc","x":"y"}}"#,
        )
        .unwrap();
        assert_eq!(sandbox_id(&cfg).as_deref(), Some("abc"));
    }
}

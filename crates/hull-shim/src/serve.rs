//! The long-lived shim process (`-socket ADDR`, no action): serves the Task
//! service on ttrpc until Shutdown.
//!
//! containerd-shim 0.12's `run` only registers the service as
//! `containerd.task.v3.Task` (containerd ≥ 1.7/2.x); containerd 1.6 calls
//! `containerd.task.v2.Task`. The messages are the same on the wire, so we
//! serve every method under both names, which needs our own serve loop.

use std::collections::HashMap;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;

use containerd_shim::protos::shim::shim_ttrpc::create_task;
use containerd_shim::protos::ttrpc::{MethodHandler, Server};
use containerd_shim::{Config, ExitSignal, Flags, Shim};

use crate::events::Publisher;
use crate::reaper::Reaper;
use crate::service::Service;
use crate::shim::{HullShim, RUNTIME_ID};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no -socket address given")]
    NoSocket,
    #[error("cannot listen on {0}")]
    Listen(String, #[source] std::io::Error),
    #[error("ttrpc server")]
    Server(#[source] containerd_shim::protos::ttrpc::Error),
    #[error(transparent)]
    Reaper(#[from] crate::reaper::Error),
}

type Methods = HashMap<String, Box<dyn MethodHandler + Send + Sync>>;

/// The same handlers again under `containerd.task.v2.Task`.
fn with_v2_names(service: Arc<Service>) -> Methods {
    let mut methods = create_task(Arc::clone(&service) as _);
    let v2: Methods = create_task(service as _)
        .into_iter()
        .map(|(k, h)| {
            (
                k.replace("/containerd.task.v3.Task/", "/containerd.task.v2.Task/"),
                h,
            )
        })
        .collect();
    methods.extend(v2);
    methods
}

fn listen(address: &str) -> Result<UnixListener, Error> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    if let Some(parent) = Path::new(path).parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::Listen(path.into(), e))?;
    }
    UnixListener::bind(path).map_err(|e| Error::Listen(path.into(), e))
}

pub fn serve(flags: &Flags) -> Result<(), Error> {
    if flags.socket.is_empty() {
        return Err(Error::NoSocket);
    }
    // Own session: signals meant for containerd's process group (Ctrl-C in a
    // terminal that started it) must not reach the shim.
    // SAFETY: setsid/signal take no pointers; SIG_IGN is a valid disposition.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let reaper = Reaper::start(true)?;
    let _ = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id);
    // No TTRPC_ADDRESS (started by hull, no containerd): events are dropped.
    let publisher = Publisher::new(std::env::var("TTRPC_ADDRESS").ok());
    let mut config = Config::default();
    let mut shim = HullShim::new(RUNTIME_ID, flags, &mut config);
    let exit: Arc<ExitSignal> = shim.exit_signal();
    let service = Arc::new(Service::new(
        flags.namespace.clone(),
        publisher,
        reaper,
        Arc::clone(&exit),
    ));
    let listener = listen(&flags.socket)?;
    // Two idle workers per connection (ttrpc's default is three), more
    // while requests block (Wait), at most eight.
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(8)
        .add_listener(listener.into_raw_fd())
        .map_err(Error::Server)?
        .register_service(with_v2_names(service));
    server.start().map_err(Error::Server)?;
    // `start` copies our stdout until EOF: close it now that we serve.
    // SAFETY: dup2 between two standard descriptors we own.
    unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) };
    shim.wait();
    server.shutdown();
    let path = flags
        .socket
        .strip_prefix("unix://")
        .unwrap_or(&flags.socket);
    let _ = std::fs::remove_file(path);
    Ok(())
}

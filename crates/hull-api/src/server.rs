//! The listener: a unix socket (0660, root's) or, only when asked, TCP; one hyper
//! HTTP/1.1 connection task per client, with upgrades for the hijacked endpoints; the
//! idle timer of `--time`; SIGINT/SIGTERM end the service (containers keep running:
//! their shims watch them).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_engine::Engine;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

use crate::routes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid listen address {0:?} (expected unix:///PATH or tcp://HOST:PORT)")]
    Address(String),
    #[error("another service already listens on {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {what}")]
    Listen {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot open the container store")]
    Engine(#[source] hull_engine::Error),
}

/// Where to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

impl std::str::FromStr for Listen {
    type Err = Error;
    fn from_str(s: &str) -> Result<Listen, Error> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.starts_with('/') {
                return Err(Error::Address(s.into()));
            }
            return Ok(Listen::Unix(p.into()));
        }
        match s.strip_prefix("tcp://") {
            Some(a) if !a.is_empty() => Ok(Listen::Tcp(a.into())),
            _ => Err(Error::Address(s.into())),
        }
    }
}

pub struct Config {
    pub root: PathBuf,
    pub listen: Listen,
    /// Exit after this long without a request or an open stream; `None`: never.
    pub idle: Option<Duration>,
}

/// What the handlers share.
pub(crate) struct App {
    pub engine: Arc<Engine>,
    pub root: PathBuf,
    /// Clients attached to containers (see `streams::Attached`).
    pub attached: crate::streams::Attached,
    pub execs: crate::exec::Execs,
    /// Removals ended, for `wait?condition=removed`.
    pub removals: crate::streams::Removals,
    /// `AutoRemove` removals under way: the service waits for them before it exits.
    removing: AtomicUsize,
    activity: Activity,
}

/// Open connections and streams, and when the last one ended (for `--time`).
#[derive(Default)]
struct Activity {
    busy: AtomicUsize,
    /// Milliseconds since `start` at the last change.
    last_ms: AtomicI64,
    start: std::sync::OnceLock<Instant>,
}

/// Held while a connection or a hijacked stream lives.
pub(crate) struct Busy(Arc<App>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.activity.touch();
        self.0.activity.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    fn elapsed_ms(&self) -> i64 {
        self.start.get_or_init(Instant::now).elapsed().as_millis() as i64
    }
    fn touch(&self) {
        self.last_ms.store(self.elapsed_ms(), Ordering::SeqCst);
    }
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let ms = self.elapsed_ms() - self.last_ms.load(Ordering::SeqCst);
        Some(Duration::from_millis(ms.max(0) as u64))
    }
}

/// Held while an `AutoRemove` removal runs.
pub(crate) struct Removing(Arc<App>);

impl Drop for Removing {
    fn drop(&mut self) {
        self.0.removing.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    pub(crate) fn removing(self: &Arc<Self>) -> Removing {
        self.removing.fetch_add(1, Ordering::SeqCst);
        Removing(self.clone())
    }

    /// Waits (at most 30 s) for the removals under way: one cut short leaves a
    /// half-removed container behind.
    fn finish_removals(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.removing.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.activity.busy.fetch_add(1, Ordering::SeqCst);
        self.activity.touch();
        Busy(self.clone())
    }
}

/// Serves until SIGINT/SIGTERM or, with `idle`, that long without clients.
pub fn serve(cfg: Config) -> Result<(), Error> {
    let engine = Engine::open(&cfg.root).map_err(Error::Engine)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(256)
        .build()
        .map_err(Error::Runtime)?;
    let app = Arc::new(App {
        engine: Arc::new(engine),
        root: cfg.root.clone(),
        attached: Default::default(),
        execs: Default::default(),
        removals: Default::default(),
        removing: AtomicUsize::new(0),
        activity: Activity::default(),
    });
    app.activity.touch();
    let res = rt.block_on(run(app.clone(), &cfg));
    app.finish_removals();
    // Streams blocked in the engine (a follow, a wait) must not hold the exit up.
    rt.shutdown_timeout(Duration::from_millis(100));
    res
}

enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

async fn run(app: Arc<App>, cfg: &Config) -> Result<(), Error> {
    let listener = bind(&cfg.listen).await?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let conn = tokio::select! {
            c = accept(&listener) => c,
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {
                let idle = app.activity.idle_for();
                if matches!((cfg.idle, idle), (Some(limit), Some(i)) if i >= limit) {
                    break;
                }
                continue;
            }
        };
        match conn {
            Ok(io) => {
                let busy = app.busy();
                let app = app.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, std::convert::Infallible>(routes::handle(app, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                    drop(busy);
                });
            }
            // EMFILE and the like: wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    if let Listener::Unix(_, p) = &listener {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

fn signal(k: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, Error> {
    tokio::signal::unix::signal(k).map_err(|source| Error::Listen {
        what: "signals".into(),
        source,
    })
}

/// A boxed stream: unix and TCP connections take the same path.
type Io = TokioIo<Box<dyn Stream>>;
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn accept(l: &Listener) -> std::io::Result<Io> {
    Ok(match l {
        Listener::Unix(u, _) => TokioIo::new(Box::new(u.accept().await?.0) as Box<dyn Stream>),
        Listener::Tcp(t) => {
            let (s, _) = t.accept().await?;
            let _ = s.set_nodelay(true);
            TokioIo::new(Box::new(s) as Box<dyn Stream>)
        }
    })
}

async fn bind(l: &Listen) -> Result<Listener, Error> {
    match l {
        Listen::Unix(p) => bind_unix(p).map(|u| Listener::Unix(u, p.clone())),
        Listen::Tcp(a) => {
            eprintln!(
                "WARNING: serving the API on tcp://{a} without TLS or authentication: \
                 anyone who reaches it is root on this host"
            );
            tokio::net::TcpListener::bind(a)
                .await
                .map(Listener::Tcp)
                .map_err(|source| Error::Listen {
                    what: format!("tcp://{a}"),
                    source,
                })
        }
    }
}

/// Binds `p` (its directory made 0755 if missing), mode 0660: root and the socket's group
/// only, as dockerd's. A socket file left by a service that died is replaced; one that
/// answers is not.
fn bind_unix(p: &Path) -> Result<tokio::net::UnixListener, Error> {
    let err = |source| Error::Listen {
        what: p.display().to_string(),
        source,
    };
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if p.exists() {
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Err(Error::InUse(p.into()));
        }
        std::fs::remove_file(p).map_err(err)?;
    }
    // Bound under a umask that leaves no window in which others could connect.
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o117) };
    let l = tokio::net::UnixListener::bind(p);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l.map_err(err)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(l)
}

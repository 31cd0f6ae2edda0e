//! The kubelet's side of the CRI, for the tests: containerd's `RuntimeService` and `ImageService`
//! over its gRPC socket (tonic clients generated from Kubernetes' cri-api by the `k8s-cri`
//! crate), blocking, plus the two things crictl does outside gRPC: reading a container's CRI log
//! file and the streaming `Exec` (a websocket to containerd's streaming server).
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use cri::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig, LinuxContainerResources,
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata,
};

/// `ContainerState` / `PodSandboxState` values as crictl prints them.
pub fn container_state(v: i32) -> &'static str {
    match cri::ContainerState::try_from(v) {
        Ok(cri::ContainerState::ContainerCreated) => "CONTAINER_CREATED",
        Ok(cri::ContainerState::ContainerRunning) => "CONTAINER_RUNNING",
        Ok(cri::ContainerState::ContainerExited) => "CONTAINER_EXITED",
        _ => "CONTAINER_UNKNOWN",
    }
}

pub struct Client {
    rt: tokio::runtime::Runtime,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
}

/// What a gRPC call answered: the value or the status (code and message), for the assertions.
pub type Answer<T> = Result<T, Box<tonic::Status>>;

impl Client {
    /// Connects to containerd's socket and waits (up to 20 s) until the CRI answers `Version`.
    pub fn connect(sock: &Path) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = sock.to_path_buf();
        // tonic needs a URI; the connector ignores it and dials the unix socket.
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .timeout(Duration::from_secs(60))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(s))
                        }
                    })),
            )
            .unwrap();
        let c = Client {
            rs: RuntimeServiceClient::new(channel.clone()),
            is: ImageServiceClient::new(channel),
            rt,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match c.call(|mut rs| async move { rs.version(cri::VersionRequest::default()).await }) {
                Ok(v) if !v.runtime_api_version.is_empty() => return c,
                other => assert!(Instant::now() < deadline, "CRI Version: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn call<T, F, Fut>(&self, f: F) -> Answer<T>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.rt
            .block_on(f(self.rs.clone()))
            .map(|r| r.into_inner())
            .map_err(Box::new)
    }

    pub fn pull(&self, image: &str) -> String {
        let req = cri::PullImageRequest {
            image: Some(spec(image)),
            ..Default::default()
        };
        let mut is = self.is.clone();
        let r = self.rt.block_on(is.pull_image(req)).unwrap();
        r.into_inner().image_ref
    }

    /// Every repo tag of every image.
    pub fn image_tags(&self) -> Vec<String> {
        let mut is = self.is.clone();
        let r = self
            .rt
            .block_on(is.list_images(cri::ListImagesRequest::default()))
            .unwrap();
        r.into_inner()
            .images
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect()
    }

    pub fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> Answer<String> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        self.call(|mut rs| async move { rs.run_pod_sandbox(req).await })
            .map(|r| r.pod_sandbox_id)
    }

    pub fn pod_status(&self, id: &str) -> cri::PodSandboxStatus {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        };
        self.call(|mut rs| async move { rs.pod_sandbox_status(req).await })
            .unwrap()
            .status
            .unwrap()
    }

    pub fn pods(&self) -> Vec<cri::PodSandbox> {
        let req = cri::ListPodSandboxRequest::default();
        self.call(|mut rs| async move { rs.list_pod_sandbox(req).await })
            .unwrap()
            .items
    }

    pub fn create(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        pod: &PodSandboxConfig,
    ) -> Answer<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(pod.clone()),
        };
        self.call(|mut rs| async move { rs.create_container(req).await })
            .map(|r| r.container_id)
    }

    pub fn start(&self, id: &str) -> Answer<()> {
        let req = cri::StartContainerRequest {
            container_id: id.to_string(),
        };
        self.call(|mut rs| async move { rs.start_container(req).await })
            .map(drop)
    }

    pub fn status(&self, id: &str) -> cri::ContainerStatus {
        let req = cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.call(|mut rs| async move { rs.container_status(req).await })
            .unwrap()
            .status
            .unwrap()
    }

    /// (state as crictl names it, exit code)
    pub fn state(&self, id: &str) -> (String, i32) {
        let s = self.status(id);
        (container_state(s.state).to_string(), s.exit_code)
    }

    pub fn containers(&self, pod_id: &str) -> Vec<cri::Container> {
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod_id.to_string(),
                ..Default::default()
            }),
        };
        self.call(|mut rs| async move { rs.list_containers(req).await })
            .unwrap()
            .containers
    }

    /// ExecSync: (stdout, stderr, exit code).
    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> (String, String, i32) {
        let req = cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 60,
        };
        let r = self
            .call(|mut rs| async move { rs.exec_sync(req).await })
            .unwrap();
        (
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
        )
    }

    /// The streaming `Exec`: containerd answers a URL on its streaming server, which we open as
    /// a websocket with the `v4.channel.k8s.io` protocol (what kubelet's streaming server speaks
    /// besides SPDY): each binary frame starts with its channel (1 stdout, 2 stderr, 3 the final
    /// status as JSON). Returns (stdout, stderr, exit code; 0 when the status is Success).
    pub fn exec_stream(&self, id: &str, cmd: &[&str]) -> (String, String, i32) {
        let req = cri::ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let url = self
            .call(|mut rs| async move { rs.exec(req).await })
            .unwrap()
            .url;
        exec_websocket(&url)
    }

    pub fn container_stats(&self, pod_id: &str) -> Vec<cri::ContainerStats> {
        let req = cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                pod_sandbox_id: pod_id.to_string(),
                ..Default::default()
            }),
        };
        self.call(|mut rs| async move { rs.list_container_stats(req).await })
            .unwrap()
            .stats
    }

    pub fn pod_stats(&self, pod_id: &str) -> cri::PodSandboxStats {
        let req = cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.to_string(),
        };
        self.call(|mut rs| async move { rs.pod_sandbox_stats(req).await })
            .unwrap()
            .stats
            .unwrap()
    }

    pub fn stop(&self, id: &str, timeout: i64) -> Answer<()> {
        let req = cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout,
        };
        self.call(|mut rs| async move { rs.stop_container(req).await })
            .map(drop)
    }

    pub fn remove(&self, id: &str) -> Answer<()> {
        let req = cri::RemoveContainerRequest {
            container_id: id.to_string(),
        };
        self.call(|mut rs| async move { rs.remove_container(req).await })
            .map(drop)
    }

    pub fn stop_pod(&self, id: &str) -> Answer<()> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call(|mut rs| async move { rs.stop_pod_sandbox(req).await })
            .map(drop)
    }

    pub fn remove_pod(&self, id: &str) -> Answer<()> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        self.call(|mut rs| async move { rs.remove_pod_sandbox(req).await })
            .map(drop)
    }

    /// What `crictl rmp -af` does: every pod stopped and removed (teardown; errors printed).
    pub fn remove_all_pods(&self) {
        for p in self.pods() {
            if let Err(e) = self.stop_pod(&p.id).and_then(|()| self.remove_pod(&p.id)) {
                eprintln!("removing pod {}: {e}", p.id);
            }
        }
    }
}

fn spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

/// A container config in the tests' style: busybox `image`, `cmd`, log file `NAME.log`.
pub fn container(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(spec(image)),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// A container's CRI log file split as `crictl logs` splits it: (stdout, stderr). Each line is
/// `TIMESTAMP STREAM TAG CONTENT` (the CRI logging format); tag `P` is a partial line that the
/// next line of the same stream continues, `F` ends it.
pub fn read_logs(path: &PathBuf) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (mut out, mut err) = (String::new(), String::new());
    for line in text.lines() {
        let mut f = line.splitn(4, ' ');
        let (_ts, stream, tag) = (f.next(), f.next(), f.next());
        let content = f.next().unwrap_or("");
        let dst = if stream == Some("stderr") {
            &mut err
        } else {
            &mut out
        };
        dst.push_str(content);
        if tag != Some("P") {
            dst.push('\n');
        }
    }
    (out, err)
}

fn exec_websocket(url: &str) -> (String, String, i32) {
    use tungstenite::client::IntoClientRequest;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tungstenite::connect(req).unwrap();
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), -1);
    loop {
        let msg = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(tungstenite::Error::Protocol(_)) => break,
            Err(e) => panic!("exec websocket: {e}"),
        };
        let data = match msg {
            tungstenite::Message::Binary(b) => b.to_vec(),
            tungstenite::Message::Close(_) => break,
            _ => continue,
        };
        let Some((&chan, body)) = data.split_first() else {
            continue;
        };
        match chan {
            1 => out.extend_from_slice(body),
            2 => err.extend_from_slice(body),
            3 if !body.is_empty() => code = exit_code(body),
            _ => {}
        }
    }
    let s = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (s(out), s(err), code)
}

/// The exit code from channel 3's status: `Success` → 0; a `NonZeroExitCode` failure carries the
/// code as `details.causes[{reason: "ExitCode", message: "3"}]`.
fn exit_code(status: &[u8]) -> i32 {
    let v: serde_json::Value = serde_json::from_slice(status).unwrap_or_default();
    if v["status"] == "Success" {
        return 0;
    }
    v["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str()?.parse().ok())
        .unwrap_or(-1)
}

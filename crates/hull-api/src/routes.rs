//! Method and path → handler. Paths are matched on their segments after the optional
//! `/v1.xx` prefix; an image name may hold slashes, so image routes join the middle.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, StatusCode};

use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::server::App;
use crate::{
    containers, create, ctr_image, ctr_more, events, exec, image_xfer, images, networks, streams,
    system, volumes,
};

pub(crate) async fn handle(app: Arc<App>, req: hyper::Request<Incoming>) -> Resp {
    let _busy = app.busy();
    let req = Req::new(req);
    match route(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn route(app: Arc<App>, mut req: Req) -> Result<Resp, ApiError> {
    let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
    let m = req.method.clone();
    let (get, post, del, head) = (
        m == Method::GET,
        m == Method::POST,
        m == Method::DELETE,
        m == Method::HEAD,
    );
    match segs.as_slice() {
        ["_ping"] if get || head => Ok(system::ping(head)),
        ["version"] if get => Ok(system::version()),
        ["info"] if get => system::info(&app).await,
        ["events"] if get => events::events(&app, &req).await,
        ["containers", "json"] if get => containers::list(&app, &req).await,
        ["containers", "create"] if post => create::create(&app, &mut req).await,
        ["containers", id, "json"] if get => containers::inspect(&app, id).await,
        ["containers", id, "start"] if post => containers::start(&app, id).await,
        ["containers", id, "stop"] if post => containers::stop(&app, id, &req, false).await,
        ["containers", id, "restart"] if post => containers::stop(&app, id, &req, true).await,
        ["containers", id, "kill"] if post => containers::kill(&app, id, &req).await,
        ["containers", id, "pause"] if post => containers::pause(&app, id, true).await,
        ["containers", id, "unpause"] if post => containers::pause(&app, id, false).await,
        ["containers", id, "top"] if get => containers::top(&app, id).await,
        ["containers", id, "resize"] if post => containers::resize(&app, id, &req).await,
        ["containers", id, "wait"] if post => streams::wait(&app, id, &req).await,
        ["containers", id, "logs"] if get => streams::logs(&app, id, &req).await,
        ["containers", id, "attach"] if post => {
            let id = id.to_string();
            streams::attach(&app, &id, &mut req).await
        }
        ["containers", id, "exec"] if post => {
            let id = id.to_string();
            exec::create(&app, &id, &mut req).await
        }
        ["exec", id, "start"] if post => {
            let id = id.to_string();
            exec::start(&app, &id, &mut req).await
        }
        ["exec", id, "resize"] if post => exec::resize(&app, id, &req).await,
        ["exec", id, "json"] if get => exec::inspect(&app, id).await,
        ["containers", id] if del => containers::remove(&app, id, &req).await,
        ["containers", id, "export"] if get => ctr_image::export(&app, id).await,
        ["containers", id, "update"] if post => {
            let id = id.to_string();
            ctr_image::update(&app, &id, &mut req).await
        }
        ["commit"] if post => ctr_image::commit(&app, &req).await,
        ["containers", "prune"] if post => ctr_more::prune(&app).await,
        ["containers", id, "rename"] if post => ctr_more::rename(&app, id, &req).await,
        ["containers", id, "stats"] if get => ctr_more::stats(&app, id, &req).await,
        ["containers", id, "archive"] if get || head => {
            ctr_more::archive_get(&app, id, &req, head).await
        }
        ["containers", id, "archive"] if m == Method::PUT => {
            let id = id.to_string();
            ctr_more::archive_put(&app, &id, &mut req).await
        }
        ["volumes"] if get => volumes::list(&app).await,
        ["volumes", "create"] if post => volumes::create(&app, &mut req).await,
        ["volumes", "prune"] if post => volumes::prune(&app).await,
        ["volumes", name] if get => volumes::inspect(&app, name).await,
        ["volumes", name] if del => volumes::remove(&app, name).await,
        ["networks"] if get => networks::list(&app, &req).await,
        ["networks", "create"] if post => networks::create(&app, &mut req).await,
        ["networks", "prune"] if post => networks::prune(&app, &req).await,
        ["networks", id] if get => networks::inspect(&app, id).await,
        ["networks", id] if del => networks::remove(&app, id).await,
        ["networks", id, "connect"] if post => {
            let id = id.to_string();
            networks::connect(&app, &id, &mut req, true).await
        }
        ["networks", id, "disconnect"] if post => {
            let id = id.to_string();
            networks::connect(&app, &id, &mut req, false).await
        }
        ["build"] if post => image_xfer::build(&app, &mut req).await,
        ["build", "prune"] if post => Ok(system::build_prune()),
        ["system", "df"] if get => system::df(&app).await,
        _ => image_route(app, &m, req).await,
    }
}

/// The image routes: a name may hold slashes (`127.0.0.1:5000/team/app`), so the name is
/// what lies between `images` and the action.
async fn image_route(app: Arc<App>, m: &Method, mut req: Req) -> Result<Resp, ApiError> {
    let segs: Vec<String> = req.segs.clone();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (get, post) = (m == Method::GET, m == Method::POST);
    match segs.as_slice() {
        ["images", "json"] if get => images::list(&app, &req).await,
        ["images", "create"] if post && req.q("fromSrc").is_some() => {
            ctr_image::import(&app, &mut req).await
        }
        ["images", "create"] if post => image_xfer::pull(&app, &req).await,
        ["images", "load"] if post => image_xfer::load(&app, &mut req).await,
        ["images", "prune"] if post => images::prune(&app, &req).await,
        ["images", "get"] if get => {
            let names = req.q("names").unwrap_or("").to_string();
            image_xfer::get(&app, &names).await
        }
        ["images", rest @ .., last] if !rest.is_empty() => {
            let name = rest.join("/");
            match *last {
                "json" if get => images::inspect(&app, &name).await,
                "history" if get => images::history(&app, &name).await,
                "tag" if post => images::tag(&app, &name, &req).await,
                "push" if post => image_xfer::push(&app, &name, &req).await,
                "get" if get => image_xfer::get(&app, &name).await,
                _ if *m == Method::DELETE => {
                    images::remove(&app, &format!("{name}/{last}"), &req).await
                }
                _ => Err(unknown(m, &req.segs)),
            }
        }
        ["images", name] if *m == Method::DELETE => images::remove(&app, name, &req).await,
        _ => Err(unknown(m, &req.segs)),
    }
}

fn unknown(m: &Method, segs: &[String]) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "page not found: {m} /{} is not an endpoint of hull's API",
            segs.join("/")
        ),
    )
}

/// Runs `f` on the blocking pool with the engine (it does file and socket I/O).
pub(crate) async fn blocking<T, F>(app: &Arc<App>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&hull_engine::Engine) -> Result<T, ApiError> + Send + 'static,
{
    let engine = app.engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::internal(format!("handler failed: {e}")))?
}

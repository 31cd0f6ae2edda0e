//! `GET /events`: hull-engine's event journal as docker's stream, one JSON event a line.
//! `since`/`until` as docker takes them (RFC 3339, unix seconds, durations); with `until`
//! the stream ends there, without it it follows the journal until the client goes.

use std::sync::Arc;
use std::time::Duration;

use hull_engine::events::{parse_time, Filters, Journal, Next, Query};

use crate::error::{chain, ApiError};
use crate::http::{self, Req, Resp};
use crate::server::App;

fn query(req: &Req) -> Result<Query, ApiError> {
    let now = hull_engine::record::now_ns();
    let time = |k: &'static str| -> Result<Option<i128>, ApiError> {
        match req.q(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_time(k, v, now)
                .map(Some)
                .map_err(|e| ApiError::bad(chain(&e))),
        }
    };
    let mut filters = Filters::default();
    for (k, vals) in crate::containers::filters(req)? {
        for v in vals {
            filters.add(&k, &v).map_err(|e| ApiError::bad(chain(&e)))?;
        }
    }
    Ok(Query {
        since: time("since")?,
        until: time("until")?,
        filters,
    })
}

pub(crate) async fn events(app: &Arc<App>, req: &Req) -> Result<Resp, ApiError> {
    let q = query(req)?;
    let journal = Journal::open(&app.root);
    let (tx, resp) = http::stream("application/json");
    tokio::task::spawn_blocking(move || {
        let mut events = journal.read(q);
        loop {
            match events.poll(Duration::from_millis(500)) {
                Ok(Next::Event(e)) => {
                    let mut line = serde_json::to_vec(&e).unwrap_or_default();
                    line.push(b'\n');
                    if tx.blocking_send(line.into()).is_err() {
                        break;
                    }
                }
                // The client's end is only seen between events.
                Ok(Next::Idle) if !tx.is_closed() => {}
                Ok(_) | Err(_) => break,
            }
        }
    });
    Ok(resp)
}

/// Journals an image, network or volume event of the API (container events are the
/// engine's own); `pairs` are its attributes.
pub(crate) fn emit(app: &App, kind: &str, action: &str, id: &str, pairs: &[(&str, &str)]) {
    let attrs = hull_engine::events::attrs(pairs.iter().copied());
    Journal::open(&app.root).emit(kind, action, id, attrs);
}

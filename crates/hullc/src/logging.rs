//! Log lines in runc's shapes, because callers parse them: containerd's
//! runc shim and conmon read `{"level":"error","msg":"...","time":"..."}` from
//! the `--log` file when a command fails.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::LogFormat;

/// runc's line shapes for the `--log` file; `None` for people reading
/// stderr (`hullc: warning: ...`).
pub struct RuncFormat(pub Option<LogFormat>);

/// Collects an event's `message` field.
#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S, N> FormatEvent<S, N> for RuncFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = Message::default();
        event.record(&mut msg);
        let level = level_name(event.metadata().level());
        let time = time_now();
        match self.0 {
            Some(LogFormat::Json) => {
                let line = serde_json::json!({ "level": level, "msg": msg.0, "time": time });
                writeln!(w, "{line}")
            }
            Some(LogFormat::Text) => writeln!(w, "time=\"{time}\" level={level} msg={:?}", msg.0),
            None => writeln!(w, "hullc: {level}: {}", msg.0),
        }
    }
}

fn time_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Installs the subscriber: the --log file (appended) or stderr.
pub fn init(path: Option<&std::path::Path>, format: LogFormat, debug: bool) -> anyhow::Result<()> {
    let level = if debug { Level::DEBUG } else { Level::WARN };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(RuncFormat(path.map(|_| format)));
    match path {
        Some(p) => {
            let f = std::fs::File::options()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--log {}: {e}", p.display()))?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

//! Event publishing to containerd, optional.
//!
//! Under containerd the shim forwards events to containerd's ttrpc socket
//! (`TTRPC_ADDRESS`). Started by `hull` there is no containerd: with no
//! address, events are dropped (logged at debug). The connection is made at
//! each event, so a containerd that was restarted gets the events that
//! follow.

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_sync::{Client, EventsClient};
use containerd_shim::protos::ttrpc::context::Context;
use log::{debug, warn};

use crate::service::timestamp;

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("connect {0}")]
    Connect(String, #[source] std::io::Error),
    #[error("ttrpc client")]
    Client(#[source] containerd_shim::protos::ttrpc::Error),
    #[error("encode event")]
    Encode(#[source] containerd_shim::protos::protobuf::Error),
    #[error("forward event")]
    Forward(#[source] containerd_shim::protos::ttrpc::Error),
}

pub struct Publisher {
    address: Option<String>,
}

/// The `Any` type URL containerd expects: the message's full protobuf
/// name. Built from `Message::NAME` (all task events live in package
/// `containerd.events`) rather than `descriptor_dyn()`, whose reflection
/// tables cost the shim ~0.5 MiB of heap once built.
fn type_url<M: Message>() -> String {
    format!("containerd.events.{}", M::NAME)
}

fn forward(address: &str, req: &ForwardRequest) -> Result<(), Error> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::Connect(path.into(), e))?;
    let client = Client::new(std::os::fd::IntoRawFd::into_raw_fd(stream)).map_err(Error::Client)?;
    EventsClient::new(client)
        .forward(Context::default(), req)
        .map_err(Error::Forward)?;
    Ok(())
}

impl Publisher {
    /// Publishes to containerd's ttrpc `address`; `None` or an empty address
    /// drops every event.
    pub fn new(address: Option<String>) -> Self {
        Publisher {
            address: address.filter(|a| !a.is_empty()),
        }
    }

    /// Sends one event on a connection of its own. Events are few (create,
    /// start, exit, delete, exec, OOM); a kept connection would cost two
    /// ttrpc client threads for the shim's whole life.
    pub fn publish<E: Event + Message>(&self, namespace: &str, ev: E) {
        let topic = ev.topic();
        let Some(address) = &self.address else {
            debug!("no containerd address: event {topic} dropped");
            return;
        };
        let value = match ev.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                warn!("{}: {topic}", Error::Encode(e));
                return;
            }
        };
        let req = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(timestamp(std::time::SystemTime::now())),
                namespace: namespace.to_string(),
                topic: topic.clone(),
                event: MessageField::some(Any {
                    type_url: type_url::<E>(),
                    value,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // One retry: containerd may be restarting.
        for attempt in 0..2 {
            match forward(address, &req) {
                Ok(()) => return,
                Err(e @ Error::Connect(..)) => {
                    debug!("{e}: event {topic} dropped");
                    return;
                }
                Err(e) if attempt == 0 => debug!("publish {topic}: {e}: retrying"),
                Err(e) => warn!("publish {topic}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    #[test]
    fn type_urls_are_the_full_protobuf_names() {
        assert_eq!(type_url::<TaskExit>(), TaskExit::descriptor().full_name());
        assert_eq!(type_url::<TaskOOM>(), TaskOOM::descriptor().full_name());
    }
}

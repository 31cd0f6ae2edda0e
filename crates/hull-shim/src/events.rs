//! Event publishing to containerd, optional.
//!
//! Under containerd the shim forwards events to containerd's ttrpc socket
//! (`TTRPC_ADDRESS`). Started by `hull` there is no containerd: with no
//! address, events are dropped (logged at debug). The connection is made at
//! the first event and remade after a failure, so a containerd that was
//! restarted gets the events that follow.

use std::sync::Mutex;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use log::{debug, warn};

pub struct Publisher {
    address: Option<String>,
    client: Mutex<Option<RemotePublisher>>,
}

impl Publisher {
    /// Publishes to containerd's ttrpc `address`; `None` or an empty address
    /// drops every event.
    pub fn new(address: Option<String>) -> Self {
        Publisher {
            address: address.filter(|a| !a.is_empty()),
            client: Mutex::new(None),
        }
    }

    /// An already connected publisher (containerd-shim's bootstrap path).
    pub fn connected(address: String, client: RemotePublisher) -> Self {
        Publisher {
            address: Some(address),
            client: Mutex::new(Some(client)),
        }
    }

    pub fn publish(&self, namespace: &str, ev: impl Event + Clone + 'static) {
        let topic = ev.topic();
        let Some(address) = &self.address else {
            debug!("no containerd address: event {topic} dropped");
            return;
        };
        let mut client = match self.client.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        // A failed send drops the connection and tries once more on a new
        // one: containerd may have been restarted since the last event.
        for attempt in 0..2 {
            if client.is_none() {
                match RemotePublisher::new(address) {
                    Ok(c) => *client = Some(c),
                    Err(e) => {
                        debug!("connect {address}: {e}: event {topic} dropped");
                        return;
                    }
                }
            }
            let Some(c) = client.as_ref() else { return };
            match c.publish(Default::default(), &topic, namespace, Box::new(ev.clone())) {
                Ok(()) => return,
                Err(e) if attempt == 0 => {
                    debug!("publish {topic}: {e}: reconnecting");
                    *client = None;
                }
                Err(e) => {
                    warn!("publish {topic}: {e}");
                    *client = None;
                }
            }
        }
    }
}

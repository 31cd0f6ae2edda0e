//! Event publishing to containerd, optional.
//!
//! Under containerd the shim forwards events to containerd's ttrpc socket
//! (`TTRPC_ADDRESS`). Started by `hull` there is no containerd: with no
//! address, events are dropped (logged at debug). The connection is made at
//! each event, so a containerd that was restarted gets the events that
//! follow.

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use log::{debug, warn};

pub struct Publisher {
    address: Option<String>,
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
    pub fn publish(&self, namespace: &str, ev: impl Event + Clone + 'static) {
        let topic = ev.topic();
        let Some(address) = &self.address else {
            debug!("no containerd address: event {topic} dropped");
            return;
        };
        // One retry: containerd may be restarting.
        for attempt in 0..2 {
            let client = match RemotePublisher::new(address) {
                Ok(c) => c,
                Err(e) => {
                    debug!("connect {address}: {e}: event {topic} dropped");
                    return;
                }
            };
            match client.publish(Default::default(), &topic, namespace, Box::new(ev.clone())) {
                Ok(()) => return,
                Err(e) if attempt == 0 => debug!("publish {topic}: {e}: retrying"),
                Err(e) => warn!("publish {topic}: {e}"),
            }
        }
    }
}

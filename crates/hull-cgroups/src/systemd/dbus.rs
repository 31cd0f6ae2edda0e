//! systemd's manager on the system bus (org.freedesktop.systemd1.Manager),
//! through zbus: StartTransientUnit, StopUnit and SetUnitProperties, each
//! waiting for its job's JobRemoved signal as runc (go-systemd) does.
//!
//! zbus's API is async; each call here runs it to completion with
//! `zbus::block_on`, so that the 30 s job timeout (runc's) can race the
//! signal stream. The connection starts zbus's executor thread: callers
//! connect only after their last fork-without-exec (hullc starts the unit
//! once init has been cloned).

use std::time::Duration;

use futures_lite::{future, StreamExt};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{self, OwnedObjectPath};

use super::{Error, Property, Unit, Value};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const IFACE: &str = "org.freedesktop.systemd1.Manager";
/// The system bus; `DBUS_SYSTEM_BUS_ADDRESS` overrides it (D-Bus spec).
const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
/// How long a job may take (runc's timeout for StartTransientUnit/StopUnit).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// The unit is already gone: nothing to stop.
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

/// A connection to systemd's manager.
pub struct Manager {
    proxy: zbus::Proxy<'static>,
}

fn call(call: &'static str, unit: &str) -> impl FnOnce(zbus::Error) -> Error {
    let unit = unit.to_string();
    move |source| Error::Call {
        call,
        unit,
        source: Box::new(source),
    }
}

fn to_dbus(v: &Value) -> zvariant::Value<'_> {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::U64(n) => (*n).into(),
        Value::Str(s) => s.as_str().into(),
        Value::U32s(v) => v.clone().into(),
        Value::Bytes(v) => v.clone().into(),
    }
}

fn to_dbus_all(props: &[Property]) -> Vec<(&str, zvariant::Value<'_>)> {
    props.iter().map(|(n, v)| (*n, to_dbus(v))).collect()
}

impl Manager {
    /// Connects to the system bus (EXTERNAL authentication: hullc runs as
    /// root) and subscribes to the manager's signals, without which systemd
    /// may not send JobRemoved.
    pub fn connect() -> Result<Manager, Error> {
        let address = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or(SYSTEM_BUS.into());
        zbus::block_on(async {
            let err = |source| Error::Connect {
                address: address.clone(),
                source: Box::new(source),
            };
            let conn = zbus::connection::Builder::address(address.as_str())
                .map_err(err)?
                .build()
                .await
                .map_err(err)?;
            let proxy = zbus::proxy::Builder::<zbus::Proxy<'static>>::new(&conn)
                .destination(DEST)
                .and_then(|b| b.path(PATH))
                .and_then(|b| b.interface(IFACE))
                .map_err(err)?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(err)?;
            if let Err(e) = proxy.call_method("Subscribe", &()).await {
                tracing::debug!("systemd Subscribe: {e}");
            }
            Ok(Manager { proxy })
        })
    }

    /// StartTransientUnit(unit, "replace", props) and waits for the job. A
    /// scope gets `pid` (it must exist: systemd moves it into the new
    /// cgroup, which it creates), its slice and delegation; a slice gets
    /// Wants= its parent, as runc does. Accounting is always on, so that
    /// systemd enables every controller the container may need above it.
    pub fn start(&self, unit: &Unit, pid: Option<u32>, props: &[Property]) -> Result<(), Error> {
        let mut all: Vec<Property> = vec![(
            "Description",
            Value::Str(format!("hull container {}", unit.name)),
        )];
        if unit.is_slice() {
            all.push(("Wants", Value::Str(unit.slice.clone())));
        } else {
            all.push(("Slice", Value::Str(unit.slice.clone())));
            all.push(("Delegate", Value::Bool(true)));
        }
        if let Some(pid) = pid.filter(|_| !unit.is_slice()) {
            all.push(("PIDs", Value::U32s(vec![pid])));
        }
        for a in [
            "MemoryAccounting",
            "CPUAccounting",
            "IOAccounting",
            "TasksAccounting",
        ] {
            all.push((a, Value::Bool(true)));
        }
        all.push(("DefaultDependencies", Value::Bool(false)));
        all.extend(props.iter().cloned());
        let aux: Vec<(&str, Vec<(&str, zvariant::Value)>)> = Vec::new();
        let name = unit.name.as_str();
        zbus::block_on(async {
            let err = call("StartTransientUnit", name);
            let jobs = self
                .proxy
                .receive_signal("JobRemoved")
                .await
                .map_err(call("subscribing to JobRemoved for", name))?;
            let reply = self
                .proxy
                .call_method(
                    "StartTransientUnit",
                    &(name, "replace", to_dbus_all(&all), aux),
                )
                .await
                .map_err(err)?;
            let job: OwnedObjectPath = reply
                .body()
                .deserialize()
                .map_err(call("StartTransientUnit's reply for", name))?;
            match wait(jobs, &job, name).await? {
                r if r == "done" => Ok(()),
                result => Err(Error::Job {
                    unit: name.into(),
                    result,
                }),
            }
        })
    }

    /// StopUnit(unit, "replace") and waits for the job: systemd kills what
    /// is left and removes the cgroup. A unit already gone (a scope ends by
    /// itself when its last process exits) is fine; a failed one is reset,
    /// so that its name can be used again.
    pub fn stop(&self, name: &str) -> Result<(), Error> {
        zbus::block_on(async {
            let jobs = self
                .proxy
                .receive_signal("JobRemoved")
                .await
                .map_err(call("subscribing to JobRemoved for", name))?;
            match self.proxy.call_method("StopUnit", &(name, "replace")).await {
                Ok(reply) => {
                    let job: OwnedObjectPath = reply
                        .body()
                        .deserialize()
                        .map_err(call("StopUnit's reply for", name))?;
                    let result = wait(jobs, &job, name).await?;
                    if result != "done" {
                        tracing::warn!("systemd: stopping {name}: job result {result:?}");
                    }
                }
                Err(zbus::Error::MethodError(e, _, _)) if e.as_str() == NO_SUCH_UNIT => {}
                Err(e) => return Err(call("StopUnit", name)(e)),
            }
            if let Err(e) = self.proxy.call_method("ResetFailedUnit", &(name,)).await {
                tracing::debug!("systemd ResetFailedUnit {name}: {e}");
            }
            Ok(())
        })
    }

    /// SetUnitProperties(unit, runtime, props): `hullc update`'s limits
    /// for systemd's own records, which it re-applies at daemon-reload.
    pub fn set_properties(&self, name: &str, props: &[Property]) -> Result<(), Error> {
        if props.is_empty() {
            return Ok(());
        }
        zbus::block_on(
            self.proxy
                .call_method("SetUnitProperties", &(name, true, to_dbus_all(props))),
        )
        .map(drop)
        .map_err(call("SetUnitProperties", name))
    }
}

/// The result of job `job` ("done", "failed", "canceled", ...) from its
/// JobRemoved signal (id, job, unit, result), within [`JOB_TIMEOUT`].
async fn wait(
    mut jobs: zbus::proxy::SignalStream<'_>,
    job: &OwnedObjectPath,
    unit: &str,
) -> Result<String, Error> {
    let removed = async {
        while let Some(msg) = jobs.next().await {
            match msg
                .body()
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
            {
                Ok((_, path, _, result)) if path == *job => return Ok(result),
                Ok(_) => {}
                Err(e) => tracing::debug!("systemd JobRemoved: {e}"),
            }
        }
        Err(Error::Job {
            unit: unit.into(),
            result: "(signal stream ended)".into(),
        })
    };
    let timeout = async {
        async_io::Timer::after(JOB_TIMEOUT).await;
        Err(Error::Timeout {
            unit: unit.into(),
            secs: JOB_TIMEOUT.as_secs(),
        })
    };
    future::or(removed, timeout).await
}

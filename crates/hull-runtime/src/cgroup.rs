//! The runtime's view of the container's cgroups (hull-cgroups does the work).
//! Temporary stand-in until hull-cgroups lands: no cgroups are made.

use oci_spec::runtime::Spec;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroups: {0}")]
    Other(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Cgroups;

pub(crate) fn prepare(_spec: &Spec, _id: &str) -> Result<Option<Cgroups>, CgroupError> {
    Ok(None)
}

impl Cgroups {
    pub(crate) fn clone_fd(&self) -> Option<std::fs::File> {
        None
    }
    pub(crate) fn enter(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    pub(crate) fn apply(&self, _spec: &Spec) -> Result<(), CgroupError> {
        Ok(())
    }
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    pub(crate) fn from_json(_v: Option<&serde_json::Value>) -> Option<Cgroups> {
        None
    }
    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(false)
    }
    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub(crate) fn kill_all(&self, _sig: i32) -> Result<(), CgroupError> {
        Ok(())
    }
}

//! hull-cgroups

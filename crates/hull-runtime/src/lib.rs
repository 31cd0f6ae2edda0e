//! hull-runtime

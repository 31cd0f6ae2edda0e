//! hull-image

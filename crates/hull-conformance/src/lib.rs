//! hull-conformance: checks, from inside a running container, that its OCI
//! `config.json` was applied. The `hull-check` binary reads the config,
//! looks at what the kernel says about the process it runs as (`/proc/self`,
//! mountinfo, `/sys/fs/cgroup`, device nodes) and prints one JSON line per
//! field:
//!
//! ```text
//! {"field":"process.user.uid","ok":true,"want":1000,"got":1000}
//! ```
//!
//! so that a regression names the field it broke. Checks are derived from the
//! config only (what it asks for), plus the host's namespace inodes passed in
//! the environment (see [`namespaces`]). Parsers are pure functions over
//! text, unit-tested on the host.

pub mod caps;
pub mod checks;
pub mod mountinfo;
pub mod report;

pub use report::{Check, Report};

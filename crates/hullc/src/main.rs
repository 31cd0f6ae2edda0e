//! hullc: a low-level OCI runtime with runc's command line. Thin: parses
//! flags and calls hull-runtime.

mod cgroup_cmds;
mod cli;
mod exec_cmd;
mod logging;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Cmd, CreateArgs, ListFormat};
use hull_runtime::CreateOptions;

fn options(a: CreateArgs, rootless_cgroups: bool, systemd_cgroup: bool) -> CreateOptions {
    CreateOptions {
        rootless_cgroups,
        systemd_cgroup,
        id: a.id,
        bundle: a.bundle,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn list(root: &std::path::Path, format: ListFormat, quiet: bool) -> anyhow::Result<()> {
    let all = hull_runtime::list(root)?;
    if quiet {
        for s in &all {
            println!("{}", s.id);
        }
        return Ok(());
    }
    if format == ListFormat::Json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &all)?;
        writeln!(out)?;
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<10} {:<50} {:<30} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for s in &all {
        println!(
            "{:<20} {:<8} {:<10} {:<50} {:<30} {}",
            s.id,
            s.pid,
            s.status,
            s.bundle.display(),
            s.created,
            s.owner
        );
    }
    Ok(())
}

/// Runs the command; `Ok(code)` is the process exit status.
fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    let root = match cli.root {
        Some(r) => r,
        None => {
            let (r, per_user) = hull_runtime::rootless::default_root();
            if per_user {
                hull_runtime::rootless::prepare_user_root(&r)?;
            }
            r
        }
    };
    let root = root.as_path();
    // create, run and exec protect hullc's binary (CVE-2019-5736) once the
    // config is parsed: an exec trampoline, or a re-exec from a protected
    // copy when the config rules the trampoline out (hull_runtime::exeseal).
    let rootless = hull_runtime::rootless::rootless_cgroups(cli.rootless.as_deref())?;
    match cli.cmd {
        Cmd::Create(a) => {
            hull_runtime::create(root, &options(a, rootless, cli.systemd_cgroup))?;
        }
        Cmd::Start { id } => hull_runtime::start(root, &id)?,
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            let o = options(create, rootless, cli.systemd_cgroup);
            let code = hull_runtime::run(root, &o, detach, keep)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::State { id } => print_json(&hull_runtime::state(root, &id)?)?,
        Cmd::Kill { all, id, signal } => hull_runtime::kill(root, &id, &signal, all)?,
        Cmd::Delete { force, id } => hull_runtime::delete(root, &id, force)?,
        Cmd::List { format, quiet } => list(root, format, quiet)?,
        Cmd::Spec { bundle, rootless } => hull_runtime::write_spec(&bundle, rootless)?,
        Cmd::Features => print_json(&hull_runtime::features())?,
        Cmd::Exec(a) => {
            let o = hull_runtime::ExecOptions {
                process: exec_cmd::process(root, &a)?,
                id: a.id,
                console_socket: a.console_socket,
                detach: a.detach,
                pid_file: a.pid_file,
                preserve_fds: a.preserve_fds,
                ignore_paused: a.ignore_paused,
                sub_cgroups: a.cgroup,
            };
            let code = hull_runtime::exec(root, &o)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::Pause { id } => hull_runtime::pause(root, &id)?,
        Cmd::Resume { id } => hull_runtime::resume(root, &id)?,
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => cgroup_cmds::ps(root, &id, format, &ps_args)?,
        Cmd::Update(a) => hull_runtime::update(root, &a.id, &cgroup_cmds::resources(&a)?)?,
        Cmd::Events {
            stats,
            interval,
            id,
        } => cgroup_cmds::events(root, &id, stats, &interval)?,
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("hullc: {e:#}");
        return ExitCode::FAILURE;
    }
    let to_log = cli.log.is_some();
    // runc's `exec` exits 255 when it could not run the process (whatever
    // the reason), so that its caller can tell that from the process' own
    // status; runc's exec.bats and cgroups.bats check it.
    let failure = match cli.cmd {
        Cmd::Exec(_) => ExitCode::from(255),
        _ => ExitCode::FAILURE,
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            // Callers read the error from the --log file; people read stderr.
            if to_log {
                tracing::error!("{msg}");
            }
            eprintln!("hullc: {msg}");
            failure
        }
    }
}

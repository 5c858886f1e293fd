//! Zero-setup runs: without `--kafka-servers`, the `kafkaesk` process hosts an
//! in-memory broker and runs the worker as its child against it.
//!
//! The broker lives in this process rather than in the runner, so a target
//! crate never compiles the broker: only the `kafkaesk` command does, once.
//! Signals are forwarded to the worker, which stops cleanly (commits and
//! flushes to the broker that is still up) before this process exits with its
//! exit code.

use std::process::{Command, ExitCode};

use kafkaesk::worker::{start_embedded_broker, WorkerOptions};
use tokio::signal::unix::{signal, SignalKind};

/// Starts the broker, runs the worker (`runner`, with its flags) against it,
/// and returns the worker's exit code.
pub fn run(runner: Command, options: &WorkerOptions) -> Result<ExitCode, String> {
    let runtime = kafkaesk::worker::runtime()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    runtime.block_on(async move {
        let broker = start_embedded_broker(options).await.map_err(|err| {
            format!("{err}; pass --embedded-broker HOST:PORT with a free port, or --kafka-servers")
        })?;
        let servers = broker.bootstrap_servers();

        let program = runner.get_program().to_string_lossy().into_owned();
        let mut child = tokio::process::Command::from(runner)
            .arg(format!("--kafka-servers={servers}"))
            .spawn()
            .map_err(|err| format!("cannot start `{program}`: {err}"))?;
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|err| format!("cannot listen for SIGTERM: {err}"))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|err| format!("cannot listen for SIGINT: {err}"))?;
        let status = loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = terminate.recv() => stop(&child),
                _ = interrupt.recv() => stop(&child),
            }
        }
        .map_err(|err| format!("lost the worker process: {err}"))?;
        drop(broker);
        Ok(exit_code(status))
    })
}

/// Asks the worker to stop cleanly; the broker stays up until it has.
fn stop(child: &tokio::process::Child) {
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // An error means the worker has exited already, which `wait` reports.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

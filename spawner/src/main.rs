//! `joblet-spawner --settings-fd N`: started by the supervisor as root. See the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match joblet_spawner::startup::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stderr is the spawner's log; logging may not be set up yet when this fails.
            eprintln!("joblet-spawner: {e}");
            if e.is_host_unsupported() {
                ExitCode::from(joblet_ipc_proto::settings::EXIT_HOST_UNSUPPORTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

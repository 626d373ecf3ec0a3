//! `rnx job …`: one module per subcommand.

pub mod cancel;
pub mod delete;
pub mod delete_all;
pub mod env;
pub mod follow;
pub mod list;
pub mod log;
pub mod metrics;
pub mod run;
pub mod run_args;
pub mod status;
pub mod stop;
pub mod transfer;
pub mod uploads;

//! `rnx job …`: one module per subcommand.

pub mod delete;
pub mod env;
pub mod follow;
pub mod list;
pub mod log;
pub mod run;
pub mod run_args;
pub mod status;
pub mod stop;
pub mod uploads;

//! `rnx monitor top [--filter=…]`: a condensed snapshot with the top processes.

use super::filter::Sections;
use super::{fetch_status, snapshot_text, ui_json};
use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub async fn run(globals: &Globals, filter: &[String]) -> Result<(), CliError> {
    let sections = Sections::parse(filter)?;
    let status = fetch_status(globals).await?;
    if globals.json {
        return print_json(&ui_json::convert(&status, &sections));
    }
    print_text(&snapshot_text::render(&status, &sections, false))
}

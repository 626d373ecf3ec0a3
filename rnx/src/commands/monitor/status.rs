//! `rnx monitor status`: everything the server reports about itself, once.

use super::filter::Sections;
use super::{fetch_status, status_text, ui_json};
use crate::commands::Globals;
use crate::error::CliError;
use crate::output::{print_json, print_text};

pub async fn run(globals: &Globals) -> Result<(), CliError> {
    let status = fetch_status(globals).await?;
    if globals.json {
        return print_json(&ui_json::convert(&status, &Sections::all()));
    }
    print_text(&status_text::render(&status))
}

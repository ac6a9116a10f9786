//! `stockbot simulate`: runs the price model alone in simulated time.

use std::path::Path;

use actors::config::EngineConfig;

/// Runs the simulation (placeholder until implemented).
///
/// # Errors
/// I/O errors writing the CSV.
pub fn run(
    _config: &EngineConfig,
    _seed: u64,
    _hours: f64,
    _csv: Option<&Path>,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("not yet implemented".into())
}

//! Log output: JSON lines for machines, readable text for a terminal.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing),
/// so tests that build several applications in one process can call it freely.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false).with_target(true),
            )
            .try_init(),
        LogFormat::Text => {
            // Colours only for a terminal: escape codes in a file or pipe are noise.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            registry.with(fmt::layer().compact().with_ansi(ansi)).try_init()
        }
    };
}

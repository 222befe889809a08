//! Shared helpers of the integration tests.

use bcp_anpr::{AnprConfig, NativePaths, PlateReader};

/// A reader on the installed native files; fails (never skips) when they are missing.
pub fn reader() -> PlateReader {
    let paths = NativePaths::from_env();
    if let Err(e) = paths.check() {
        panic!("ANPR tests need the native stack: {e}. Run scripts/install-native first.");
    }
    match PlateReader::new(&AnprConfig::from_env()) {
        Ok(r) => r,
        Err(e) => panic!("cannot start the plate reader: {e}"),
    }
}

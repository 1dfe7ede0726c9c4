//! The routing file as arbitrary bytes: loading must never panic, whatever was saved
//! (a half-written file, another format, a binary), and every way the result is shown
//! to a user must not panic either.
//!
//! Diagnostics are formatted because that is where byte offsets from the TOML parser
//! become lines, character columns and caret widths (`diagnostic.rs`, including the
//! `redacted()` rewrite of a secret's source line): the arithmetic most exposed to
//! multi-byte characters, CRLF and spans at the end of the file. A file that loads is
//! described as `/config` and `veer check` would show it.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use veer_config::Config;

fuzz_target!(|data: &[u8]| {
    // A folder in the path, so relative paths in the file are resolved as on a load.
    match Config::from_file_bytes(Path::new("conf/fuzz.toml"), data) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = warning.to_string();
            }
            let _ = loaded.config.describe().to_string();
            for route in &loaded.config.routes {
                let _ = route.strategy(&loaded.config).to_string();
            }
        }
        Err(diagnostics) => {
            // A refused file always says why: at least one error, not only warnings.
            assert!(diagnostics.errors().next().is_some(), "{diagnostics:?}");
            let _ = diagnostics.to_string();
        }
    }
});

//! A missing or broken ONNX Runtime is an error naming the file. Its own test binary, so its own
//! process: `ort` loads the library once per process, and the other tests load the real one.

use std::path::PathBuf;

use bcp_anpr::{AnprConfig, AnprError, NativePaths, PlateReader};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bcp-anpr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn missing_native_dir_names_the_library_path() {
    let dir = scratch_dir("missing");
    let cfg = AnprConfig {
        paths: NativePaths::in_dir(&dir),
        ..AnprConfig::default()
    };
    let err = PlateReader::new(&cfg).expect_err("no library there");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            AnprError::Settings(bcp_anpr::SettingsError::MissingNative { .. })
        ),
        "{err:?}"
    );
    assert!(
        msg.contains(&cfg.paths.onnxruntime_lib.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("scripts/install-native"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_library_is_a_load_error() -> std::io::Result<()> {
    let dir = scratch_dir("broken");
    let paths = NativePaths::in_dir(&dir);
    for p in [&paths.onnxruntime_lib, &paths.det_model, &paths.rec_model] {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, b"not an ELF file")?;
    }
    let cfg = AnprConfig {
        paths: paths.clone(),
        ..AnprConfig::default()
    };
    let err = PlateReader::new(&cfg).expect_err("garbage library");
    let msg = err.to_string();
    assert!(matches!(err, AnprError::RuntimeLoad { .. }), "{err:?}");
    assert!(
        msg.contains(&paths.onnxruntime_lib.display().to_string()),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir)
}

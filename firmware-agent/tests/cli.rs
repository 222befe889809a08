//! The binaries' behaviour on bad input: clear messages, non-zero exits, no panics.
use anyhow::Result;
use bcp_agent::sim_config::{self, SimEndpoints};
use std::path::Path;
use std::process::Command;

fn sim_config_file(dir: &Path, native_dir: Option<&Path>) -> Result<std::path::PathBuf> {
    let sim = SimEndpoints {
        weighbridge_port: "/dev/null".into(),
        weighbridge_protocol: "toledo-continuous-checksum".into(),
        weighbridge_checksum: true,
        weighbridge_pattern: None,
        dims_port: "/dev/null".into(),
        dims_protocol: "dims-ascii".into(),
        lane_scanner: None,
        camera_dir: dir.join("camera"),
        scanner_addr: "127.0.0.1:9".into(),
    };
    let mut cfg = sim_config::for_simulator(&sim, "TJ-TEST-01", "127.0.0.1", 9, dir);
    cfg.anpr.native_dir = native_dir.map(Path::to_path_buf);
    let path = dir.join("agent.toml");
    std::fs::write(&path, toml::to_string(&cfg)?)?;
    Ok(path)
}

#[test]
fn the_agent_without_onnx_runtime_says_what_is_missing_and_how_to_install_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-native-here");
    let cfg = sim_config_file(dir.path(), Some(&missing))?;
    let out = Command::new(env!("CARGO_BIN_EXE_bcp-agent"))
        .arg("--config")
        .arg(&cfg)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no-native-here"),
        "names the path: {stderr}"
    );
    assert!(
        stderr.contains("install-native"),
        "says how to fix it: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

#[test]
fn a_missing_or_invalid_config_is_refused_naming_the_file_and_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(env!("CARGO_BIN_EXE_bcp-agent"))
        .arg("--config")
        .arg(dir.path().join("nope.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nope.toml"), "{stderr}");

    let cfg = sim_config_file(dir.path(), None)?;
    let ok = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["config", "validate"])
        .arg(&cfg)
        .output()?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"));

    let text = std::fs::read_to_string(&cfg)?.replace("stable_readings = 5", "stable_readings = 1");
    std::fs::write(&cfg, text)?;
    let bad = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["config", "validate"])
        .arg(&cfg)
        .output()?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("weighbridge.stable_readings"), "{stderr}");
    Ok(())
}

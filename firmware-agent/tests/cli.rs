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
        rear_camera_dir: None,
        presence_port: None,
        scanner_addr: "127.0.0.1:9".into(),
        scanner_drop_folder: None,
        max_axle_gap_ms: None,
        empty_lane_frames: false,
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

#[test]
fn completions_and_the_man_page_come_from_the_cli_definitions() -> Result<()> {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bcpctl"))
            .args(args)
            .output()
    };
    for (shell, marker) in [
        ("bash", "_bcpctl()"),
        ("zsh", "#compdef bcpctl"),
        ("fish", "complete -c bcpctl"),
    ] {
        let out = run(&["completions", shell])?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("apply") && (text.contains("--yes") || text.contains("-l yes")),
            "{shell}: config apply and its flags"
        );
    }
    let out = run(&["man"])?;
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(page.contains(".TH bcpctl 1"), "{page}");
    assert!(
        page.contains("completions") && page.contains("config"),
        "{page}"
    );
    let out = run(&["completions", "tcsh"])?;
    assert!(!out.status.success(), "an unknown shell is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
    Ok(())
}

#[test]
fn config_set_without_a_terminal_or_yes_writes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = sim_config_file(dir.path(), None)?;
    let before = std::fs::read_to_string(&cfg)?;
    let out = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["config", "set", "lane.close_after_ms", "4000", "--config"])
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--yes"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ lane.close_after_ms = 4000"));
    assert_eq!(std::fs::read_to_string(&cfg)?, before);
    assert!(!bcp_agent::config_edit::audit_log_path(&cfg).exists());
    // An unknown key: named, with its line, nothing written.
    let out = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args([
            "config",
            "set",
            "lane.close_after_secs",
            "4",
            "--yes",
            "--config",
        ])
        .arg(&cfg)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("close_after_secs") && stderr.contains("line"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&cfg)?, before);
    Ok(())
}

/// The daemon links neither OpenCV nor ONNX Runtime (nor the C++ runtime they need): that work
/// is its vision worker's (`bcp-vision`), a process of its own. An idle agent stays small and
/// a crash in native code cannot take it down. (`readelf` is in binutils, which the Rust
/// toolchain's linker needs anyway.)
#[test]
fn the_daemon_does_not_link_the_native_vision_libraries() -> Result<()> {
    let needed = |binary: &str| -> Result<Vec<String>> {
        let out = Command::new("readelf").args(["-d", binary]).output()?;
        anyhow::ensure!(out.status.success(), "readelf -d {binary}: {out:?}");
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_owned))
            .collect())
    };
    let agent = needed(env!("CARGO_BIN_EXE_bcp-agent"))?;
    assert!(
        !agent.is_empty() && agent.iter().any(|l| l.starts_with("libc.so")),
        "readelf found the agent's libraries: {agent:?}"
    );
    let native: Vec<_> = agent
        .iter()
        .filter(|l| l.contains("opencv") || l.contains("onnxruntime") || l.contains("stdc++"))
        .collect();
    assert!(native.is_empty(), "bcp-agent links {native:?}");
    let worker = needed(env!("CARGO_BIN_EXE_bcp-vision"))?;
    assert!(
        worker.iter().any(|l| l.contains("opencv_core")),
        "the check would see OpenCV where it is linked: {worker:?}"
    );
    Ok(())
}

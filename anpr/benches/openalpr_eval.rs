//! Bench: reads the photos of openalpr-layout folders (`groundtruth.tsv`: file x y w h PLATE) and
//! prints exact-match rate, within-one-character rate, detection recall at IoU and ms per image.
//!
//! `cargo bench -p bcp-anpr --bench openalpr_eval --profile dev -- [--iou 0.3] [--det-limit PX] [--quick PX] [--rec-batch N] [--unclip R] [--refine N] [--box-threshold T] [--formats EU,US,BR] [--misses] DIR...`
//! One line per folder and one for all folders together; `--misses` also prints each image whose
//! best read is not exact. The last line is the process's peak resident memory.
//!
//! Wall-clock milliseconds depend on what else the machine runs; the CPU milliseconds (all of the
//! process's threads, from `/proc/self/task/*/schedstat`) do not, and on an otherwise idle machine
//! with two ONNX Runtime threads the wall time is about half of them. The folders are the dev sets of `../shared/data/anpr`, never the tests'.
use anyhow::Context;
use bcp_anpr::eval::{iou, parse_groundtruth, Outcome, Summary};
use bcp_anpr::{AnprConfig, PlateReader};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut dirs = Vec::new();
    let (mut min_iou, mut misses) = (0.3, false);
    let mut cfg = AnprConfig::from_env();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--misses" => misses = true,
            "--iou" => min_iou = args.next().context("--iou needs a value")?.parse()?,
            "--formats" => {
                let list = args.next().context("--formats needs a value")?;
                cfg.formats = list.split(',').map(str::to_owned).collect();
            }
            "--box-threshold" => {
                cfg.det_box_threshold = args
                    .next()
                    .context("--box-threshold needs a value")?
                    .parse()?
            }
            "--refine" => {
                cfg.refine_top = args.next().context("--refine needs a value")?.parse()?
            }
            "--unclip" => {
                cfg.det_unclip_ratio = args.next().context("--unclip needs a value")?.parse()?
            }
            "--rec-batch" => {
                cfg.rec_batch_size = args.next().context("--rec-batch needs a value")?.parse()?
            }
            "--quick" => {
                cfg.det_quick_side_px = args.next().context("--quick needs a value")?.parse()?
            }
            "--det-limit" => {
                cfg.det_limit_side_px = args.next().context("--det-limit needs a value")?.parse()?
            }
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    anyhow::ensure!(
        !dirs.is_empty(),
        "usage: openalpr_eval [--iou T] [--misses] DIR..."
    );
    let mut reader = PlateReader::new(&cfg)?;
    let (mut all, mut all_cpu) = (Vec::new(), Vec::new());
    for dir in &dirs {
        let gt_path = dir.join("groundtruth.tsv");
        let text = std::fs::read_to_string(&gt_path)
            .with_context(|| format!("reading {}", gt_path.display()))?;
        let (mut outcomes, mut cpu_ms) = (Vec::new(), Vec::new());
        for gt in parse_groundtruth(&text).with_context(|| gt_path.display().to_string())? {
            let bytes = std::fs::read(dir.join(&gt.file))
                .with_context(|| format!("reading {}", gt.file))?;
            let (started, cpu0) = (Instant::now(), process_cpu_ns());
            let mut alts = String::new();
            let o = match reader.read_image_bytes(&bytes) {
                Ok(reads) => Outcome {
                    best: {
                        for r in reads.iter().take(4) {
                            alts += &format!(
                                " {}[{}:{:.2}]",
                                r.text,
                                r.format.unwrap_or("-"),
                                r.confidence
                            );
                        }
                        reads.first().map(|r| r.text.clone())
                    },
                    expected: gt.plate.clone(),
                    detected: reads.iter().any(|r| iou(r.bbox, gt.bbox) >= min_iou),
                    ms: Some(started.elapsed().as_secs_f64() * 1e3),
                },
                Err(e) => {
                    eprintln!("{}: {e}", gt.file);
                    Outcome {
                        expected: gt.plate.clone(),
                        best: None,
                        detected: false,
                        ms: None,
                    }
                }
            };
            cpu_ms.push((process_cpu_ns() - cpu0) as f64 / 1e6);
            if misses && !o.exact() {
                println!("  miss {}: want {} got{alts}", gt.file, o.expected);
            }
            outcomes.push(o);
        }
        println!(
            "{}: {}; {}",
            dir.display(),
            Summary::of(&outcomes),
            cpu_line(&mut cpu_ms)
        );
        all_cpu.extend(cpu_ms);
        all.extend(outcomes);
    }
    if dirs.len() > 1 {
        println!("all: {}; {}", Summary::of(&all), cpu_line(&mut all_cpu));
    }
    println!("peak RSS {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

/// CPU time of every thread of this process so far, in nanoseconds (0 where /proc is missing).
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn cpu_line(ms: &mut [f64]) -> String {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    format!("CPU median {:.1} ms, p90 {:.1} ms", pct(0.5), pct(0.9))
}

/// The process's peak resident set size (`VmHWM`), in KiB (0 where /proc is missing).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

//! `bcpctl anpr read` and `bcpctl anpr eval`: the plate reader from the command line.
//!
//! `read [--json] [--kind plate|wagon|container|vessel|uld] IMAGE...` reads each image with one
//! [`PlateReader`] and prints one line per image. With `--json` the line is
//! `{"image": PATH, "reads": [{"text", "confidence", "bbox": [x, y, w, h], "format"}], "ms"}`,
//! best read first, text normalised (uppercase, no spaces or dashes). For `--kind plate` the reads
//! are the reader's candidates (plate formats first); for the other kinds the reader fits no
//! plate format (`AnprConfig::fit_plate_formats`) and prints only the texts that
//! validate as that identifier (check digit, or a unique single-character repair, see
//! `bcp_anpr::identifiers`), with the scheme as the format. An image that cannot be read
//! (missing, corrupt, truncated, empty) is a line `{"image": PATH, "error": MESSAGE}` and the
//! next image is read; the exit status is then 1.
//!
//! `eval DIR...` measures the reader on folders in the openalpr layout (`groundtruth.tsv`:
//! file x y w h PLATE): exact match, within one character, detection recall at IoU, median and
//! p90 ms per image (see `bcp_anpr::eval`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use bcp_anpr::eval::{iou, parse_groundtruth, Outcome, Summary};
use bcp_anpr::identifiers::{self, Check, IdKind};
use bcp_anpr::{AnprConfig, NativePaths, PlateCandidate, PlateReader};
use clap::Subcommand;
use serde::Serialize;

/// At most this many reads are printed per image.
const MAX_READS: usize = 5;

#[derive(Debug, Subcommand)]
pub enum AnprCommand {
    /// Reads plates (or wagon, container, vessel, ULD numbers) in image files.
    Read {
        /// One JSON object per image instead of text.
        #[arg(long)]
        json: bool,
        /// What to read: plate, wagon, container, vessel or uld.
        #[arg(long, default_value = "plate")]
        kind: String,
        /// Native files (ONNX Runtime, models); default `$BCP_NATIVE_DIR` or
        /// `~/.local/share/bcp-edge/native`.
        #[arg(long)]
        native_dir: Option<PathBuf>,
        /// Plate formats to fit, comma-separated codes (default: all).
        #[arg(long, value_delimiter = ',')]
        formats: Vec<String>,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Exact-match, within-one, detection-recall and timing figures over openalpr-layout folders.
    Eval {
        /// A box counts as the plate's at this IoU with the ground-truth box or more.
        #[arg(long, default_value_t = 0.3)]
        iou: f64,
        /// Also print each image whose best read is not exact.
        #[arg(long)]
        misses: bool,
        #[arg(long)]
        native_dir: Option<PathBuf>,
        /// Plate formats to fit, comma-separated codes (default: all).
        #[arg(long, value_delimiter = ',')]
        formats: Vec<String>,
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

pub fn run(cmd: AnprCommand) -> Result<()> {
    match cmd {
        AnprCommand::Read {
            json,
            kind,
            native_dir,
            formats,
            images,
        } => {
            // An identifier is read as it is written: no plate grammar cuts or bends it.
            let plates = kind == "plate";
            let reader = reader(native_dir.as_deref(), formats, plates)?;
            read(json, &kind, reader, &images)
        }
        AnprCommand::Eval {
            iou,
            misses,
            native_dir,
            formats,
            dirs,
        } => eval(
            iou,
            misses,
            reader(native_dir.as_deref(), formats, true)?,
            &dirs,
        ),
    }
}

fn reader(
    native_dir: Option<&Path>,
    formats: Vec<String>,
    fit_plate_formats: bool,
) -> Result<PlateReader> {
    let mut cfg = AnprConfig::from_env();
    cfg.formats = formats;
    cfg.fit_plate_formats = fit_plate_formats;
    if let Some(dir) = native_dir {
        cfg.paths = NativePaths::in_dir(dir);
    }
    Ok(PlateReader::new(&cfg)?)
}

/// The `--json` line of an image, keys in the order (struct fields serialise in order).
#[derive(Serialize)]
struct ReadLine<'a> {
    image: &'a str,
    reads: Vec<ReadJson<'a>>,
    ms: f64,
}

#[derive(Serialize)]
struct ReadJson<'a> {
    text: &'a str,
    confidence: f64,
    bbox: [i32; 4],
    format: Option<&'static str>,
}

/// The `--json` line of an image that could not be read.
#[derive(Serialize)]
struct ErrorLine<'a> {
    image: &'a str,
    error: String,
}

/// One read as printed.
struct Read {
    text: String,
    confidence: f32,
    bbox: [i32; 4],
    format: Option<&'static str>,
}

fn read(json: bool, kind: &str, mut reader: PlateReader, images: &[PathBuf]) -> Result<()> {
    let id_kind = match kind {
        "plate" => None,
        other => Some(other.parse::<IdKind>().map_err(anyhow::Error::msg)?),
    };
    let mut failed = 0usize;
    for image in images {
        let started = Instant::now();
        let result = std::fs::read(image)
            .with_context(|| format!("reading {}", image.display()))
            .and_then(|bytes| Ok(reader.read_image_bytes(&bytes)?));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let path = image.display().to_string();
        match result {
            Ok(candidates) => {
                let reads = select(candidates, id_kind);
                if json {
                    let line = ReadLine {
                        image: &path,
                        reads: reads
                            .iter()
                            .map(|r| ReadJson {
                                text: &r.text,
                                confidence: round(f64::from(r.confidence), 3),
                                bbox: r.bbox,
                                format: r.format,
                            })
                            .collect(),
                        ms: round(ms, 1),
                    };
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    let best = reads.first().map_or_else(
                        || "no read".to_owned(),
                        |r| {
                            format!(
                                "{} ({}, {:.2}) at {:?}",
                                r.text,
                                r.format.unwrap_or("no format"),
                                r.confidence,
                                r.bbox
                            )
                        },
                    );
                    println!("{path}: {best}, {ms:.1} ms");
                }
            }
            Err(e) => {
                failed += 1;
                if json {
                    let line = ErrorLine {
                        image: &path,
                        error: format!("{e:#}"),
                    };
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    println!("{path}: error: {e:#}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images could not be read", images.len());
    }
    Ok(())
}

/// The reads to print: plate candidates as ranked, or the texts that validate as `kind`.
fn select(candidates: Vec<PlateCandidate>, kind: Option<IdKind>) -> Vec<Read> {
    let mut out: Vec<Read> = Vec::new();
    for c in candidates {
        let read = match kind {
            None => Read {
                text: c.text,
                confidence: c.confidence,
                bbox: c.bbox,
                format: c.format,
            },
            Some(kind) => match identifiers::validate(kind, &c.text) {
                Ok(id) => Read {
                    confidence: match id.check {
                        Check::Repaired { .. } => c.confidence * 0.85,
                        Check::Valid | Check::NoCheckDigit => c.confidence,
                    },
                    text: id.text,
                    bbox: c.bbox,
                    format: Some(id.scheme.code()),
                },
                Err(_) => continue,
            },
        };
        if !out.iter().any(|r| r.text == read.text) {
            out.push(read);
        }
    }
    if kind.is_some() {
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    }
    out.truncate(MAX_READS);
    out
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

fn eval(min_iou: f64, misses: bool, mut reader: PlateReader, dirs: &[PathBuf]) -> Result<()> {
    let mut all = Vec::new();
    for dir in dirs {
        let gt_path = dir.join("groundtruth.tsv");
        let text = std::fs::read_to_string(&gt_path)
            .with_context(|| format!("reading {}", gt_path.display()))?;
        let truth = parse_groundtruth(&text).with_context(|| gt_path.display().to_string())?;
        let mut outcomes = Vec::with_capacity(truth.len());
        for gt in truth {
            let started = Instant::now();
            let result = std::fs::read(dir.join(&gt.file))
                .with_context(|| format!("reading {}", gt.file))
                .and_then(|bytes| Ok(reader.read_image_bytes(&bytes)?));
            let outcome = match result {
                Ok(reads) => Outcome {
                    expected: gt.plate.clone(),
                    best: reads.first().map(|r| r.text.clone()),
                    detected: reads.iter().any(|r| iou(r.bbox, gt.bbox) >= min_iou),
                    ms: Some(started.elapsed().as_secs_f64() * 1e3),
                },
                Err(e) => {
                    eprintln!("{}: {e:#}", gt.file);
                    Outcome {
                        expected: gt.plate.clone(),
                        best: None,
                        detected: false,
                        ms: None,
                    }
                }
            };
            if misses && !outcome.exact() {
                let got = outcome.best.as_deref().unwrap_or("-");
                println!("  miss {}: want {} got {got}", gt.file, outcome.expected);
            }
            outcomes.push(outcome);
        }
        println!("{}: {}", dir.display(), Summary::of(&outcomes));
        all.extend(outcomes);
    }
    if dirs.len() > 1 {
        println!("all: {}", Summary::of(&all));
    }
    Ok(())
}

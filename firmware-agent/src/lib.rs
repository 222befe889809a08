//! # bcp-agent: the border-post appliance daemon and its technician CLI
//!
//! - [`config`]: the one TOML file a technician edits, validated key by key.
//! - [`profile`]: the post's type (`[post] transport_mode`: road, rail, air, river), its UN/ECE
//!   Rec. 19 code written into every record, and which correlator and identifier it uses.
//! - [`config_edit`]: changing that file safely (`bcpctl config set | apply`): edits that keep
//!   comments, a key-level diff, validation with lines, atomic writes, `.prev`, the audit log.
//! - [`central_config`]: settings central sends in a signed `config` list, written into that
//!   file as `bcpctl config set` would (only the sections a reload applies) and reloaded.
//! - [`lane`]: the pure lane correlator that links plate, weight, dimensions and scan into a
//!   [`bcp_record::Crossing`], and its rules with reasons: late scans held for and joined,
//!   tailgaters split, reversals not recorded (logged), unread plates and orphan scans recorded
//!   with a flag saying why.
//!   On an air or river post the same correlator reads a ULD id or a vessel's ENI/IMO number
//!   (check digits validated, one look-alike repaired) into the plate slot.
//! - [`train`]: the pure train correlator of a rail post: wagons framed by the rail weighbridge,
//!   wagon numbers (UIC/CIS) and container codes (ISO 6346) placed on them by time, one record
//!   per train after a quiet window, flags with reasons (unread or repaired numbers, wagon
//!   count mismatch, missing weights).
//! - [`axle_scale`]: a short axle scale's axle groups summed into one vehicle weight and framed
//!   as one vehicle for the lane correlator (`[weighbridge] axle_scale`).
//! - [`camera_presence`]: vehicles framed by camera motion (`[camera] presence = "motion"`):
//!   on after a few moving frames, off after a quiet time, for a lane without presence sensors.
//! - [`checks`]: flags raised at the edge on a closed crossing (overweight, over-dimension,
//!   overweight axle group or by axle-count class, hotlist, overweight wagon).
//! - [`camera`]: a camera's frame folder or stream read through the ANPR engine on its own
//!   thread.
//! - [`vision`]: the vision worker, a `bcp-vision` child process that does the camera's and
//!   the crossing images' OpenCV and ONNX Runtime work, so that the daemon links neither.
//! - [`frames`]: the bounded cache of frames with plate reads, from which a crossing's plate
//!   crop and overview are cut when it is recorded (`[evidence]`).
//! - [`scanner`]: the X-ray scanner adapters: a JSON-lines TCP feed and a drop folder of XML
//!   metadata files (processed once, bad files quarantined with a reason).
//! - [`health`]: the device board: each device's connection, frame counters, last evidence and
//!   alarms, sent to central with the uplink's heartbeat.
//! - [`agent`]: the main loop: device tasks, correlator, outbox, uplink, systemd notifications.
//! - [`view`]: the running agent as its local tools see it (devices, lanes, outbox, link, disk,
//!   crossings as they are committed); read-only for them.
//! - [`control`]: the local control API on a Unix socket (line-delimited JSON; `bcpctl status`,
//!   `devices`, `lanes`, `events tail`, `sync now`); its messages in [`control::protocol`].
//! - [`reload`]: SIGHUP / `reload`: what a new config changes at once, which devices restart,
//!   what waits for a restart; the config audit log forwarded to central.
//! - [`metrics`]: the Prometheus text endpoint on localhost (`GET /metrics`).
//! - [`systemd`]: READY / watchdog / STOPPING.
//! - [`sim_config`]: a config for the simulated post of `bcp-sim` (demo and tests).
//!
//! Binaries: `bcp-agent` (the daemon) and `bcpctl` (the technician's CLI).

pub mod agent;
pub mod axle_scale;
pub mod camera;
pub mod camera_presence;
pub mod central_config;
pub mod checks;
pub mod config;
pub mod config_edit;
pub mod control;
pub mod frames;
pub mod health;
pub mod lane;
pub mod metrics;
pub mod profile;
pub mod reload;
pub mod scanner;
pub mod sim_config;
pub mod systemd;
pub mod train;
pub mod view;
pub mod vision;

pub use config::AgentConfig;

//! # bcp-drivers: serial devices at the weighbridge
//!
//! Weighing indicators and dimension sensors speak simple serial protocols. This crate keeps the
//! three layers apart (as `rumqtt` and `quinn` do): pure byte protocols, a pure state machine that
//! is given the time, and a thin tokio driver that owns the port.
//!
//! ## Layout
//!
//! | Module | Layer | What it holds |
//! |---|---|---|
//! | [`frame`] | pure | [`FrameError`]: what every decoder returns for garbage, with the bytes to skip |
//! | [`toledo`] | pure | Mettler Toledo standard continuous output: [`ToledoFrame`], [`ToledoCodec`] |
//! | [`xk3190`] | pure | Keli/Yaohua XK3190: format 0 (XOR check), `=` formats 1 (reversed) and 2 |
//! | [`xk3190_a9`] | pure | XK3190 command mode (A9+/A23P/DS3), polled: handshake, gross, tare, net |
//! | [`a12e`] | pure | Yaohua XK3190-A12E continuous output (`WG004.139kg3D`) |
//! | [`mt_sics`] | pure | MT-SICS, polled: `S`/`SI`/`Z`/`T`/`@` commands and every reply kind |
//! | [`sma`] | pure | SMA SCP-0499 level 1, polled: `W`/`Z`/`T` requests, status, motion, range |
//! | [`rlws`], [`cardinal`], [`avery`] | pure | the Rice Lake, Cardinal and Weigh-Tronix stream formats |
//! | [`generic`] | pure | a configured regex with named groups, for an indicator nobody planned for |
//! | [`indicator`] | pure | [`AnyProtocol`]: every protocol by name, one [`ScaleReading`] / [`Measurement`] shape |
//! | [`sick_cola`] | pure, given scans | SICK CoLa A `LMDscandata` profiles -> width/height; [`sick_cola::DimensionTracker`]: length from scans x speed |
//! | [`dims_ascii`] | pure | `$DIM,...*hh` lines from dimension systems: [`DimensionFrame`] |
//! | [`presence_ascii`] | pure | `ENTRY 1` / `EXIT 0` lines from the presence sensors at the bridge's two ends |
//! | [`presence`] | pure, given the time | [`presence::BridgeSides`]: the two sensors' states -> a vehicle on, and the end it left by |
//! | [`inspect`] | pure | frame boundaries, protocol scores and the `stable` column behind `bcpctl serial` |
//! | [`stability`] | pure, given the time | [`StabilityDetector`]: readings in, [`WeighEvent`]s out |
//! | [`alarms`] | pure, given the time | [`alarms::ScaleMonitor`]: overload, underload, indicator error and zero drift raised and cleared |
//! | [`axles`] | pure, given the time | [`axles::AxleSummer`]: per-axle stable weights of a short axle scale summed into one vehicle |
//! | [`codec`] | tokio-util | [`ProtocolCodec`]: a `Decoder`/`Encoder` around any [`Protocol`]; garbage is an item, never a stream error |
//! | [`serial`] | I/O | [`run_weighbridge`], [`run_indicator`] (any protocol by name), [`run_dimension_sensor`], [`run_lane_scanner`] (sick-cola), [`run_presence_sensors`]: open, read, reconnect with backoff, report [`DeviceEvent`]s and [`DeviceHealth`] |
//!
//! ## Contracts
//!
//! * A decoder is `decode(&[u8]) -> Result<Option<(Frame, consumed)>, FrameError>`: `Ok(None)` means
//!   "need more bytes"; an error carries `skip >= 1`, the bytes to drop before trying again, and never
//!   skips past the start of a later frame, so garbage followed by a frame always yields that frame.
//!   Line protocols without a start byte (MT-SICS, `generic`) cannot know where garbage ends: it
//!   costs at most the one line it runs into. Every decoder's proptest checks the common bound:
//!   after garbage and two frames, the second always comes out.
//! * Encoders are used by the simulator (`bcp-sim`); each protocol also has test vectors written out
//!   by hand from the vendor's byte layout, so encoder and decoder cannot agree on a mistake.
//! * Nothing here panics on input. Fuzz targets for every decoder live in `drivers/fuzz/`.

pub mod a12e;
pub mod alarms;
pub mod avery;
pub mod axles;
pub mod cardinal;
pub mod codec;
pub mod dims_ascii;
pub mod frame;
pub mod generic;
pub mod indicator;
pub mod inspect;
pub mod mt_sics;
pub mod presence;
pub mod presence_ascii;
pub mod rlws;
pub mod serial;
pub mod sick_cola;
pub mod sma;
pub mod stability;
pub mod toledo;
pub mod xk3190;
pub mod xk3190_a9;

#[cfg(test)]
mod testkit;

/// Re-exported so that tools and tests open ports with the same version (`SerialStream::pair()`).
pub use tokio_serial;

pub use codec::{Decoded, DimsAscii, Protocol, ProtocolCodec};
pub use dims_ascii::DimensionFrame;
pub use frame::{FrameError, FrameErrorKind};
pub use indicator::{AnyProtocol, Decimal, Measurement, ScaleReading, ScaleStatus, Unit};
pub use serial::{
    run_dimension_sensor, run_indicator, run_lane_scanner, run_presence_sensors, run_weighbridge,
    DeviceEvent, DeviceHealth, DriverError, FlowControl, Parity, SerialPortConfig, SharedHealth,
};
pub use stability::{StabilityConfig, StabilityDetector, StableWeight, WeighEvent, WeightReading};
pub use toledo::{DecimalPosition, ToledoCodec, ToledoFrame};

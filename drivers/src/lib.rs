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
//! | [`dims_ascii`] | pure | `$DIM,...*hh` lines from dimension systems: [`DimensionFrame`] |
//! | [`stability`] | pure, given the time | [`StabilityDetector`]: readings in, [`WeighEvent`]s out |
//! | [`codec`] | tokio-util | [`ProtocolCodec`]: a `Decoder`/`Encoder` around any [`Protocol`]; garbage is an item, never a stream error |
//! | [`serial`] | I/O | [`run_weighbridge`], [`run_dimension_sensor`]: open, read, reconnect with backoff, report [`DeviceEvent`]s and [`DeviceHealth`] |
//!
//! ## Contracts
//!
//! * A decoder is `decode(&[u8]) -> Result<Option<(Frame, consumed)>, FrameError>`: `Ok(None)` means
//!   "need more bytes"; an error carries `skip >= 1`, the bytes to drop before trying again, and never
//!   skips past the start of a later frame, so garbage followed by a frame always yields that frame.
//! * Encoders are used by the simulator (`bcp-sim`); each protocol also has test vectors written out
//!   by hand from the vendor's byte layout, so encoder and decoder cannot agree on a mistake.
//! * Nothing here panics on input. Fuzz targets for every decoder live in `drivers/fuzz/`.

pub mod codec;
pub mod dims_ascii;
pub mod frame;
pub mod serial;
pub mod stability;
pub mod toledo;

pub use codec::{Decoded, DimsAscii, Protocol, ProtocolCodec};
pub use dims_ascii::DimensionFrame;
pub use frame::{FrameError, FrameErrorKind};
pub use serial::{
    run_dimension_sensor, run_weighbridge, DeviceEvent, DeviceHealth, DriverError, Parity,
    SerialPortConfig, SharedHealth,
};
pub use stability::{StabilityConfig, StabilityDetector, StableWeight, WeighEvent, WeightReading};
pub use toledo::{DecimalPosition, ToledoCodec, ToledoFrame};

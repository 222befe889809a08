//! # bcp-sim: simulated border-post hardware
pub mod plate_render;

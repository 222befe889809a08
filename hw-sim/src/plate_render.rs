//! Rendering of synthetic number-plate camera frames (owned by the ANPR work; placeholder).

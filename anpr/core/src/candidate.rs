//! One text read from a frame, as the reader ranks it and the lane votes on it.

use serde::{Deserialize, Serialize};

use crate::formats;

/// One text read from a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlateCandidate {
    /// Normalised text: uppercase ASCII letters and digits; corrected if it fits a format.
    pub text: String,
    /// 0..1, see the module header.
    pub confidence: f32,
    /// `[x, y, w, h]` in frame pixels.
    pub bbox: [i32; 4],
    /// Code of the plate format the text fits ("TJ", "UZ", "KZ", ..), if any.
    pub format: Option<&'static str>,
    /// One confidence per character of `text`; for a character that the format corrected, the
    /// recogniser's confidence in what it saw there, times the correction's cost.
    pub char_confidences: Vec<f32>,
}

/// A [`PlateCandidate`] as read back (from the vision worker's replies): its format code must
/// be one of [`formats::FORMATS`].
#[derive(Deserialize)]
struct CandidateOnTheWire {
    text: String,
    confidence: f32,
    bbox: [i32; 4],
    format: Option<String>,
    char_confidences: Vec<f32>,
}

impl<'de> Deserialize<'de> for PlateCandidate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CandidateOnTheWire::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

impl TryFrom<CandidateOnTheWire> for PlateCandidate {
    type Error = String;

    fn try_from(c: CandidateOnTheWire) -> Result<Self, String> {
        let format = c
            .format
            .map(|code| {
                formats::by_code(&code)
                    .map(|f| f.code)
                    .ok_or_else(|| format!("unknown plate format {code:?}"))
            })
            .transpose()?;
        Ok(Self {
            text: c.text,
            confidence: c.confidence,
            bbox: c.bbox,
            format,
            char_confidences: c.char_confidences,
        })
    }
}

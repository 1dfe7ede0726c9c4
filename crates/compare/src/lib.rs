//! veer's judge of a shadow: given the live and the shadow answer to one request, did
//! the new model predict the same thing, and by how much did it differ?
//!
//! Pure: bytes and settings in, a [`Comparison`] out; no I/O, no clocks. On a
//! request's way this is step 5, run in the shadow's detached task once both answers
//! are complete; the proxy turns the result into metrics and divergence-log lines.
//!
//! Modes ([`veer_config::CompareMode`]): `status` compares status codes; `exact` also
//! the body bytes; `json` parses both bodies and compares them structurally
//! ([`json`]): numbers within `abs_tolerance` OR `rel_tolerance`, strings, booleans
//! and null exactly, arrays element-wise with equal lengths, objects by key.
//! Prediction formats are understood ([`formats`]): Open Inference Protocol V2
//! `outputs` are compared by name rather than position, and classification outputs
//! (class-probability rows, label strings, and binary scores under
//! `compare.threshold`, class 1 at or above it) also yield whether the predicted class
//! agrees ([`Comparison::label_agreement`]). An answer of several outputs (a V2
//! `probability` beside a `label`, or a V1 object of named values) is judged by those
//! outputs that are labels on both sides, paired by name; the rest are left to the
//! numeric comparison.
//!
//! What is compared is the whole body, or the parts of it at the `select` JSON
//! pointers ([`veer_config::Compare::select`]). A pointer segment in a list of V2
//! outputs names an output, wherever it is in the list (`/outputs/label`, and
//! `/outputs/label/data` for its data), as `ignore` and the reported differences do;
//! in any other list, or where no output has that name, a number is a position
//! (`/outputs/1`). Several parts are judged together, each as if it were the only
//! one selected (its differences under its own pointer): the pair diverges when any
//! part does, the deviation is the largest over the parts, and the labels disagree
//! when they disagree in any part that has labels (agree when some part has labels
//! and none disagrees). A part missing from an answer makes the pair that side's
//! error, with a reason that names the pointer and what the answer has there
//! instead ("… no value at select pointer /outputs/label (at /outputs its outputs
//! are named: probability, score)").
//!
//! Every pair of numbers compared also adds its signed difference (shadow − live)
//! to the comparison's [`Shift`], so a dashboard can say which way the new model
//! moves its scores, not only how far.
//!
//! Both the fast path ([`lockstep`]) and the
//! full comparison ([`json`]) judge numbers and classes through [`numbers`], and the
//! full one pairs object keys through a sorted index, so a comparison grows with the
//! answers' size (n log n), not its square: a 60,000-key object takes milliseconds,
//! not seconds.

pub mod formats;
pub mod json;
pub mod lockstep;
pub mod numbers;

use veer_config::{Compare, CompareMode};

pub use numbers::Shift;

/// One side's answer: its status code and (up to the compare limit) its body.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: &'a [u8],
}

/// How a comparison came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Same prediction (within tolerance).
    Match,
    /// Different prediction.
    Diverged,
    /// The live answer cannot be judged (server error, unparsable body, ...).
    LiveError(String),
    /// The shadow answer cannot be judged.
    ShadowError(String),
}

impl Outcome {
    /// The `outcome` label of `veer_shadow_comparisons_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::Diverged => "diverged",
            Outcome::LiveError(_) => "live_error",
            Outcome::ShadowError(_) => "shadow_error",
        }
    }
}

/// One place where the two answers differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// JSON pointer (RFC 6901) into the compared value; `"status"` or `"body"`
    /// outside JSON.
    pub pointer: String,
    /// The live side's value there (`None`: absent).
    pub live: Option<serde_json::Value>,
    /// The shadow side's value there (`None`: absent).
    pub shadow: Option<serde_json::Value>,
}

/// The verdict on one live/shadow pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Match, diverged, or why it could not be judged.
    pub outcome: Outcome,
    /// The largest absolute difference between paired numbers, when any were paired
    /// (reported for matches too: a match within tolerance still has a deviation).
    pub max_abs_deviation: Option<f64>,
    /// Which way the shadow's numbers moved from the live ones, over every pair of
    /// numbers compared ([`numbers::Shift`]); empty when no numbers were paired.
    pub shift: Shift,
    /// The first few differences, in document order.
    pub differences: Vec<Difference>,
    /// For classification outputs: whether the predicted classes agree, over the
    /// outputs that yield labels on both sides, paired by name; `None` when there is
    /// no such output. Binary scores are classes only under `compare.threshold`
    /// ([`formats::label_agreement`]). Judged apart from `outcome`: scores within
    /// tolerance on either side of the threshold match and still disagree.
    pub label_agreement: Option<bool>,
}

/// How many differences a comparison lists: enough to see the pattern in a log line.
pub const MAX_DIFFERENCES: usize = 8;

impl Comparison {
    fn error(outcome: Outcome) -> Comparison {
        Comparison {
            outcome,
            max_abs_deviation: None,
            shift: Shift::default(),
            differences: Vec::new(),
            label_agreement: None,
        }
    }
}

/// Judges a live and a shadow answer under `settings`.
///
/// A 5xx on either side means that side failed rather than predicted, whatever the
/// mode: it is `LiveError` / `ShadowError`, not a divergence.
pub fn compare(settings: &Compare, live: Answer<'_>, shadow: Answer<'_>) -> Comparison {
    if live.status >= 500 {
        return Comparison::error(Outcome::LiveError(format!("live answered {}", live.status)));
    }
    if shadow.status >= 500 {
        return Comparison::error(Outcome::ShadowError(format!(
            "shadow answered {}",
            shadow.status
        )));
    }
    let status_difference = (live.status != shadow.status).then(|| Difference {
        pointer: "status".to_owned(),
        live: Some(live.status.into()),
        shadow: Some(shadow.status.into()),
    });
    match settings.mode {
        CompareMode::Status => by_status(status_difference),
        CompareMode::Exact => {
            let mut verdict = by_status(status_difference);
            if live.body != shadow.body {
                verdict.outcome = Outcome::Diverged;
                verdict.differences.push(Difference {
                    pointer: "body".to_owned(),
                    live: None,
                    shadow: None,
                });
            }
            verdict
        }
        CompareMode::Json => match status_difference {
            Some(d) => Comparison {
                outcome: Outcome::Diverged,
                max_abs_deviation: None,
                shift: Shift::default(),
                differences: vec![d],
                label_agreement: None,
            },
            None => json::compare_bodies(settings, live.body, shadow.body),
        },
    }
}

fn by_status(difference: Option<Difference>) -> Comparison {
    Comparison {
        outcome: if difference.is_some() {
            Outcome::Diverged
        } else {
            Outcome::Match
        },
        max_abs_deviation: None,
        shift: Shift::default(),
        differences: difference.into_iter().collect(),
        label_agreement: None,
    }
}

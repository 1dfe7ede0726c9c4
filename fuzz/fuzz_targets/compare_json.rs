//! A live and a shadow answer as arbitrary bytes, judged under every compare mode and a
//! spread of `select` / `ignore` / tolerance settings: the comparison must never panic
//! (the shadow backend is the one veer trusts least), and it must keep the promises its
//! tests pin for chosen inputs, here for any input:
//!
//! - a 5xx on either side is that side's error, never a verdict on the bodies;
//! - a match lists no differences, and no verdict lists more than `MAX_DIFFERENCES`;
//! - the lockstep fast path only proves what the full comparison finds (same outcome,
//!   deviation and label agreement), and `compare` agrees with the full comparison.
//!
//! Input layout: two settings bytes, then the live body, a 0xFF byte, the shadow body.
//! 0xFF never occurs in UTF-8 text, so it cannot be part of a JSON answer. Without a
//! 0xFF the shadow answers the very same bytes as live: the pair that should match,
//! which takes the fast path furthest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use veer_compare::{compare, json, lockstep, Answer, Outcome, MAX_DIFFERENCES};
use veer_config::{Compare, CompareMode};

/// `select` lists, all of valid RFC 6901 pointers as validation lets through: the
/// fast path handles none, "" and one plain key; escapes, deeper pointers, outputs
/// by name and several parts take the full comparison.
const SELECTS: [&[&str]; 16] = [
    &[],
    &[""],
    &["/predictions"],
    &["/outputs"],
    &["/predictions/0"],
    &["/a~1b"],
    &["/~0/x"],
    &["/predictions/"],
    &["/outputs/label"],
    &["/outputs/label/data"],
    &["/outputs/probability", "/outputs/label"],
    &["/outputs/0", "/outputs/label/data/1"],
    &["/predictions", "/model_version"],
    &["/a~1b", "/~0/x"],
    &["/outputs/~1x/data/0"],
    &["/predictions/0", "/predictions/1"],
];

/// `ignore` lists: inside, equal to, beside (a shared prefix that is not a parent)
/// and outside the selections above, with escapes and empty segments.
const IGNORES: [&[&str]; 16] = [
    &[],
    &["/model_version"],
    &["/predictions/0"],
    &["/id", "/predictions/1/score"],
    &[""],
    &["/predictions"],
    &["/outputs/0/data", "/a~1b"],
    &["/~0/x/~1"],
    &["/predictions2"],
    &["/predictions/"],
    &["/"],
    &["/predictions//"],
    &["/0", "/1", "/2"],
    &["/outputs/0", "/outputs/name"],
    &["/a~1b/c", "/~0"],
    &["/predictions/0/0", "/model_version", "/id"],
];

/// (abs, rel) tolerances: none, the default, typical, and the edges validation allows.
const TOLERANCES: [(f64, f64); 8] = [
    (0.0, 0.0),
    (1e-6, 0.0),
    (0.01, 0.0),
    (0.0, 0.1),
    (0.5, 1.0),
    (f64::MAX, 0.0),
    (0.0, 1.0),
    (1e-300, 1e-300),
];

/// (live, shadow) status codes: equal, different, and each side failing.
const STATUSES: [(u16, u16); 4] = [(200, 200), (200, 404), (503, 200), (200, 500)];

fuzz_target!(|data: &[u8]| {
    let [a, b, bodies @ ..] = data else {
        return;
    };
    let (live_body, shadow_body) = match bodies.iter().position(|&byte| byte == 0xFF) {
        Some(at) => (&bodies[..at], &bodies[at + 1..]),
        None => (bodies, bodies),
    };
    let mode = match a & 0b11 {
        0 | 1 => CompareMode::Json,
        2 => CompareMode::Exact,
        _ => CompareMode::Status,
    };
    let (live_status, shadow_status) = STATUSES[usize::from(a >> 2 & 0b11)];
    let (abs_tolerance, rel_tolerance) = TOLERANCES[usize::from(a >> 4 & 0b111)];
    let settings = Compare {
        mode,
        // The select index takes b's three low bits and its top one (the four bits
        // between are the ignore index).
        select: SELECTS[usize::from((b & 0b111) | ((b >> 4) & 0b1000))]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        ignore: IGNORES[usize::from(b >> 3 & 0b1111)]
            .iter()
            .map(|p| p.to_string())
            .collect(),
        abs_tolerance,
        rel_tolerance,
        ..Compare::default()
    };

    let verdict = compare(
        &settings,
        Answer {
            status: live_status,
            body: live_body,
        },
        Answer {
            status: shadow_status,
            body: shadow_body,
        },
    );
    assert!(verdict.differences.len() <= MAX_DIFFERENCES, "{verdict:?}");
    if verdict.outcome == Outcome::Match {
        assert!(verdict.differences.is_empty(), "{verdict:?}");
    }
    if live_status >= 500 {
        assert_eq!(verdict.outcome.label(), "live_error");
        return;
    }
    if shadow_status >= 500 {
        assert_eq!(verdict.outcome.label(), "shadow_error");
        return;
    }
    if mode != CompareMode::Json || live_status != shadow_status {
        return;
    }

    let full = json::full_comparison(&settings, live_body, shadow_body);
    if let Some(quick) = lockstep::quick_match(&settings, live_body, shadow_body) {
        assert_eq!(full.outcome, Outcome::Match, "fast path proved a match");
        assert_eq!(quick.max_abs_deviation, full.max_abs_deviation);
        assert_eq!(quick.label_agreement, full.label_agreement);
    }
    assert_eq!(verdict.outcome, full.outcome);
    assert_eq!(verdict.max_abs_deviation, full.max_abs_deviation);
    assert_eq!(verdict.label_agreement, full.label_agreement);
});

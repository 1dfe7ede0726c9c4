//! Structural comparison of two JSON answers.
//!
//! Bodies are parsed with sonic-rs (SIMD): on the 1 KiB prediction pairs veer judges
//! per shadowed request it parses about four times faster than serde_json's `Value`,
//! which is what keeps a comparison within its 5 µs budget (`benches/compare.rs`).

use std::cmp::Ordering;

use sonic_rs::{JsonNumberTrait, Number, Value, ValueRef};
use veer_config::Compare;

use crate::numbers::{Shift, Tolerance, Verdict};
use crate::{formats, Comparison, Difference, Outcome, MAX_DIFFERENCES};

/// Deeper nesting than this is not a prediction: the answer is refused before it is
/// parsed. sonic-rs recurses per level without a limit of its own (10,000 levels
/// overflow a 2 MiB thread stack), and so does the walk below.
pub const MAX_DEPTH: usize = 64;

/// Parses, selects (`select`: one part or several, V2 outputs by name or position),
/// normalizes (V2 outputs by name) and compares two JSON bodies, leaving out the
/// `ignore` pointers. Nothing is copied or mutated on the way for the usual KServe
/// V1 / TF Serving shapes.
pub fn compare_bodies(settings: &Compare, live: &[u8], shadow: &[u8]) -> Comparison {
    if let Some(quick) = crate::lockstep::quick_match(settings, live, shadow) {
        return Comparison {
            outcome: Outcome::Match,
            max_abs_deviation: quick.max_abs_deviation,
            shift: quick.shift,
            differences: Vec::new(),
            label_agreement: quick.label_agreement,
        };
    }
    full_comparison(settings, live, shadow)
}

/// The comparison without the lockstep fast path: parses both answers and walks
/// them, explaining every difference. [`compare_bodies`] falls back to it.
pub fn full_comparison(settings: &Compare, live: &[u8], shadow: &[u8]) -> Comparison {
    let live = match parse(live) {
        Ok(v) => v,
        Err(e) => {
            return Comparison::error(Outcome::LiveError(format!("live body is not JSON: {e}")))
        }
    };
    let shadow = match parse(shadow) {
        Ok(v) => v,
        Err(e) => {
            return Comparison::error(Outcome::ShadowError(format!(
                "shadow body is not JSON: {e}"
            )))
        }
    };
    // The whole answer is the one part of an empty selection.
    let whole = [String::new()];
    let parts = if settings.select.is_empty() {
        &whole[..]
    } else {
        &settings.select[..]
    };
    // Every part is found in both answers before any is compared; the live side is
    // checked first, as a live answer without the part says the route's `select`
    // is wrong, whatever the shadow did.
    let live = match select(&live, parts, "live") {
        Ok(selected) => selected,
        Err(reason) => return Comparison::error(Outcome::LiveError(reason)),
    };
    let shadow = match select(&shadow, parts, "shadow") {
        Ok(selected) => selected,
        Err(reason) => return Comparison::error(Outcome::ShadowError(reason)),
    };
    let tolerance = Tolerance {
        abs: settings.abs_tolerance,
        rel: settings.rel_tolerance,
    };
    // Each part is judged as if it were the only one selected, and the verdicts
    // add up: differences in the order the parts are listed, the largest
    // deviation, and labels that disagree in any part disagree.
    let mut found = Findings::default();
    let mut label_agreement = None;
    for ((prefix, live), shadow) in parts.iter().zip(live).zip(shadow) {
        let (live, shadow) = (formats::normalize(live), formats::normalize(shadow));
        let ignore = relative_ignores(&settings.ignore, prefix);
        let mut walk = TreeWalk {
            tolerance,
            ignore: &ignore,
            prefix,
            path: Vec::new(),
            found,
        };
        if !walk.ignored() {
            walk.values(&live, &shadow);
        }
        found = walk.found;
        label_agreement = both_agree(
            label_agreement,
            formats::label_agreement(&live, &shadow, settings.threshold),
        );
    }
    Comparison {
        outcome: if found.differing == 0 {
            Outcome::Match
        } else {
            Outcome::Diverged
        },
        max_abs_deviation: found.max_abs_deviation,
        shift: found.shift,
        differences: found.differences,
        label_agreement,
    }
}

/// Label agreement over two parts: any disagreement settles it; otherwise they
/// agree when either carries labels.
fn both_agree(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (None, None) => None,
        _ => Some(true),
    }
}

/// The value of each `select` part in the `side` answer, or, for the first part it
/// lacks, the reason the pair cannot be judged: the pointer, and what the answer has
/// where the pointer stopped.
fn select<'v>(answer: &'v Value, parts: &[String], side: &str) -> Result<Vec<&'v Value>, String> {
    parts
        .iter()
        .map(|pointer| {
            resolve(answer, pointer).map_err(|instead| {
                format!("the {side} answer has no value at select pointer {pointer} ({instead})")
            })
        })
        .collect()
}

/// The `ignore` pointers that fall inside the selected value, as path segments
/// relative to it.
fn relative_ignores(ignore: &[String], select: &str) -> Vec<Vec<String>> {
    ignore
        .iter()
        .filter_map(|p| {
            let rest = if select.is_empty() {
                p.as_str()
            } else if p == select {
                ""
            } else {
                p.strip_prefix(select)?
                    .strip_prefix('/')
                    .map(|_| &p[select.len()..])?
            };
            Some(if rest.is_empty() {
                Vec::new()
            } else {
                rest.strip_prefix('/')?.split('/').map(unescape).collect()
            })
        })
        .collect()
}

/// Parses a body, refusing nesting deeper than [`MAX_DEPTH`].
fn parse(body: &[u8]) -> Result<Value, String> {
    if nesting_exceeds(body, MAX_DEPTH) {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    sonic_rs::from_slice(body).map_err(|e| e.to_string())
}

/// True when the JSON text `body` opens more than `limit` arrays or objects at once.
fn nesting_exceeds(body: &[u8], limit: usize) -> bool {
    // Fast path (SIMD): a body with few openers at all cannot nest deeply (a 1 KiB
    // prediction has a few dozen).
    let openers = memchr::memchr2_iter(b'[', b'{', body)
        .take(limit + 1)
        .count();
    openers > limit && nesting_depth_exceeds(body, limit)
}

/// The exact check: one pass over the bytes, skipping string contents (and their
/// escapes).
fn nesting_depth_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Two JSON numbers under `tolerance`: integers as integers (so ids above 2^53 are not
/// rounded into equality), anything else as floats.
pub fn judge_numbers(a: &Number, b: &Number, tolerance: Tolerance) -> Verdict {
    let integer = |n: &Number| n.as_i64().map(i128::from).or(n.as_u64().map(i128::from));
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => tolerance.integers(x, y),
        _ => tolerance.floats(
            a.as_f64().unwrap_or(f64::NAN),
            b.as_f64().unwrap_or(f64::NAN),
        ),
    }
}

#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// The full comparison's walk over two parsed answers, in step.
struct TreeWalk<'a> {
    tolerance: Tolerance,
    ignore: &'a [Vec<String>],
    prefix: &'a str,
    path: Vec<Segment<'a>>,
    found: Findings,
}

/// What the walks of one comparison found, over all its selected parts.
#[derive(Default)]
struct Findings {
    max_abs_deviation: Option<f64>,
    shift: Shift,
    /// The first [`MAX_DIFFERENCES`] of them.
    differences: Vec<Difference>,
    /// How many values differ in all.
    differing: usize,
}

impl<'a> TreeWalk<'a> {
    fn values(&mut self, live: &'a Value, shadow: &'a Value) {
        match (live.as_ref(), shadow.as_ref()) {
            (ValueRef::Number(a), ValueRef::Number(b)) => {
                let Verdict {
                    equal,
                    deviation,
                    shift,
                } = judge_numbers(&a, &b, self.tolerance);
                self.found.shift.add(shift);
                self.found.max_abs_deviation = Some(
                    self.found
                        .max_abs_deviation
                        .map_or(deviation, |m| m.max(deviation)),
                );
                if !equal {
                    self.differ(Some(live), Some(shadow));
                }
            }
            (ValueRef::String(a), ValueRef::String(b)) if a == b => {}
            (ValueRef::Bool(a), ValueRef::Bool(b)) if a == b => {}
            (ValueRef::Null, ValueRef::Null) => {}
            (ValueRef::Array(a), ValueRef::Array(b)) => {
                if a.len() != b.len() {
                    self.differ(Some(live), Some(shadow));
                }
                for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                    self.path.push(Segment::Index(i));
                    if !self.ignored() {
                        self.values(x, y);
                    }
                    self.path.pop();
                }
            }
            (ValueRef::Object(a), ValueRef::Object(b)) => {
                // Both sides' members in one sorted order, merged: linear after the
                // sort (a lookup per key would be quadratic, sonic-rs objects being
                // lists), and the differences listed do not depend on which side is
                // live, nor on either server's key order.
                let (a, b) = (sorted_members(a.iter()), sorted_members(b.iter()));
                let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
                loop {
                    let order = match (a.peek(), b.peek()) {
                        (None, None) => break,
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
                    };
                    let (x, y) = match order {
                        Ordering::Less => (a.next(), None),
                        Ordering::Greater => (None, b.next()),
                        Ordering::Equal => (a.next(), b.next()),
                    };
                    let Some((key, _)) = x.or(y) else { break };
                    let (x, y) = (x.map(|(_, v)| v), y.map(|(_, v)| v));
                    self.path.push(Segment::Key(key));
                    if !self.ignored() {
                        match (x, y) {
                            (Some(x), Some(y)) => self.values(x, y),
                            (x, y) => self.differ(x, y),
                        }
                    }
                    self.path.pop();
                }
            }
            _ => self.differ(Some(live), Some(shadow)),
        }
    }

    /// Whether the current path is one of the `ignore` pointers.
    fn ignored(&self) -> bool {
        self.ignore.iter().any(|pointer| {
            pointer.len() == self.path.len()
                && pointer.iter().zip(&self.path).all(|(want, at)| match at {
                    Segment::Key(k) => want == k,
                    Segment::Index(i) => want.parse() == Ok(*i),
                })
        })
    }

    fn differ(&mut self, live: Option<&Value>, shadow: Option<&Value>) {
        self.found.differing += 1;
        if self.found.differences.len() < MAX_DIFFERENCES {
            self.found.differences.push(Difference {
                pointer: self.pointer(),
                live: live.map(to_serde),
                shadow: shadow.map(to_serde),
            });
        }
    }

    /// The current path as an RFC 6901 pointer, under the select prefix.
    fn pointer(&self) -> String {
        let mut out = self.prefix.to_owned();
        for segment in &self.path {
            out.push('/');
            match segment {
                Segment::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

/// An object's members sorted by key, each key once (the first occurrence, as a
/// lookup would find it).
pub(crate) fn sorted_members<'v>(
    members: impl Iterator<Item = (&'v str, &'v Value)>,
) -> Vec<(&'v str, &'v Value)> {
    let mut members: Vec<(&str, &Value)> = members.collect();
    members.sort_by_key(|(key, _)| *key);
    members.dedup_by_key(|(key, _)| *key);
    members
}

/// A differing value for the report (off the fast path: at most a few per pair).
fn to_serde(value: &Value) -> serde_json::Value {
    sonic_rs::to_string(value)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The value at an RFC 6901 `pointer`. A segment is a key in an object; in a list of
/// named outputs (V2 `outputs`, as [`formats::normalize`] keys them by name) it
/// names an output, wherever the output is in the list, so `select` reads
/// `/outputs/label` as `ignore` and the differences do; elsewhere, or when no output
/// has that name, it is a position (`/outputs/1`). When there is no value, the error
/// says what the answer has where the pointer stopped.
fn resolve<'v>(doc: &'v Value, pointer: &str) -> Result<&'v Value, String> {
    if pointer.is_empty() {
        return Ok(doc);
    }
    let mut current = doc;
    // Validation lets only "" and pointers starting with "/" through.
    let Some(segments) = pointer.strip_prefix('/') else {
        return Err("not a JSON pointer".to_owned());
    };
    let mut at = 0;
    for raw in segments.split('/') {
        let key = unescape(raw);
        let next = match current.as_ref() {
            ValueRef::Array(items) => formats::named_outputs_list(current)
                .and_then(|outputs| outputs.into_iter().find(|(name, _)| *name == key))
                .map(|(_, output)| output)
                .or_else(|| items.get(key.parse::<usize>().ok()?)),
            ValueRef::Object(map) => map.get(&key),
            _ => None,
        };
        current = next.ok_or_else(|| what_is_at(current, &pointer[..at]))?;
        at += 1 + raw.len();
    }
    Ok(current)
}

/// How many names or keys a reason lists before "and N more": enough for any real
/// model's outputs, few enough for one log line.
const NAMES_SHOWN: usize = 8;

/// How much of each name a reason shows: output names are short; a longer one is
/// more likely noise than a name.
const NAME_CHARS: usize = 40;

/// Where a pointer stopped (`at`, a prefix of it) and what the answer has there, for
/// the reason of a failed `select`: its outputs' names, its keys, or its kind.
fn what_is_at(value: &Value, at: &str) -> String {
    let at = if at.is_empty() { "the top" } else { at };
    match value.as_ref() {
        ValueRef::Array(items) => match formats::named_outputs_list(value) {
            Some(outputs) => format!(
                "at {at} its outputs are named: {}",
                listing(outputs.into_iter().map(|(name, _)| name))
            ),
            None => format!(
                "at {at} it has a list of {} item{}",
                items.len(),
                if items.len() == 1 { "" } else { "s" }
            ),
        },
        ValueRef::Object(map) if map.is_empty() => format!("at {at} it has an empty object"),
        ValueRef::Object(map) => {
            format!(
                "at {at} its keys are: {}",
                listing(map.iter().map(|(k, _)| k))
            )
        }
        ValueRef::String(_) => format!("at {at} it has a string"),
        ValueRef::Number(_) => format!("at {at} it has a number"),
        ValueRef::Bool(_) => format!("at {at} it has a boolean"),
        ValueRef::Null => format!("at {at} it has null"),
    }
}

/// Names from a backend's answer, for a log line: at most [`NAMES_SHOWN`], in the
/// answer's order, each cut to [`NAME_CHARS`] characters and without control
/// characters (a backend is not trusted to write into veer's logs).
fn listing<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|name| {
            let mut clean = name.chars().filter(|c| !c.is_control());
            let mut shown: String = clean.by_ref().take(NAME_CHARS).collect();
            if clean.next().is_some() {
                shown.push('…');
            }
            shown
        })
        .collect();
    if names.len() > NAMES_SHOWN {
        shown.push(format!("and {} more", names.len() - NAMES_SHOWN));
    }
    shown.join(", ")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        sonic_rs::from_str(text).unwrap()
    }

    fn v(text: &str) -> Value {
        sonic_rs::from_str(text).unwrap()
    }

    const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    #[test]
    fn json_integers_compare_as_integers_whatever_their_width() {
        let v = judge_numbers(&n("9007199254740993"), &n("9007199254740992"), EXACT);
        assert_eq!((v.equal, v.deviation), (false, 1.0));
        let v = judge_numbers(&n("18446744073709551615"), &n("-1"), EXACT);
        assert_eq!(v.deviation, 18446744073709551616.0);
        assert!(judge_numbers(&n("0"), &n("0.0"), EXACT).equal);
    }

    #[test]
    fn huge_floats_do_not_overflow_into_a_panic() {
        let v = judge_numbers(&n("1e308"), &n("-1e308"), EXACT);
        assert!(!v.equal);
        assert!(v.deviation.is_infinite());
    }

    #[test]
    fn objects_are_compared_by_key_once_whatever_the_order_or_repeats() {
        let settings = Compare::default();
        let c = full_comparison(
            &settings,
            br#"{"b": 1, "a": 2, "a": 3}"#,
            br#"{"a": 2, "b": 1}"#,
        );
        assert_eq!(c.outcome, Outcome::Match, "{c:?}");
        let c = full_comparison(&settings, br#"{"c": 1, "a": 1}"#, br#"{"b": 1, "a": 2}"#);
        let pointers: Vec<&str> = c.differences.iter().map(|d| d.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a", "/b", "/c"]);
    }

    #[test]
    fn pointers_resolve_through_objects_and_arrays() {
        let doc = v(r#"{"a": {"b/c": [10, 20]}, "~": 1}"#);
        assert_eq!(resolve(&doc, "/a/b~1c/1"), Ok(&v("20")));
        assert_eq!(resolve(&doc, "/~0"), Ok(&v("1")));
        assert_eq!(resolve(&doc, ""), Ok(&doc));
        assert_eq!(
            resolve(&doc, "/a/b~1c/9"),
            Err("at /a/b~1c it has a list of 2 items".to_owned())
        );
        assert_eq!(
            resolve(&doc, "/a/x"),
            Err("at /a its keys are: b/c".to_owned())
        );
    }

    #[test]
    fn a_pointer_names_an_output_in_a_list_of_named_outputs() {
        let doc =
            v(r#"{"outputs": [{"name": "p", "data": [0.8]}, {"name": "label", "data": ["x"]}]}"#);
        assert_eq!(resolve(&doc, "/outputs/label/data/0"), Ok(&v(r#""x""#)));
        assert_eq!(
            resolve(&doc, "/outputs/0/name"),
            Ok(&v(r#""p""#)),
            "or a position"
        );
        assert_eq!(
            resolve(&doc, "/outputs/score"),
            Err("at /outputs its outputs are named: p, label".to_owned())
        );
        // A list that is not of distinctly named objects is read by position only.
        let repeated = v(r#"[{"name": "a"}, {"name": "a"}]"#);
        assert_eq!(
            resolve(&repeated, "/a"),
            Err("at the top it has a list of 2 items".to_owned())
        );
        assert_eq!(resolve(&repeated, "/1"), Ok(&v(r#"{"name": "a"}"#)));
    }

    #[test]
    fn a_reason_lists_a_few_clean_names() {
        let names: Vec<String> = (0..10).map(|i| format!("o{i}")).collect();
        assert_eq!(
            listing(names.iter().map(String::as_str)),
            "o0, o1, o2, o3, o4, o5, o6, o7, and 2 more"
        );
        let long = "x".repeat(NAME_CHARS + 5);
        let shown = listing(["a\nb\u{1b}[31m", long.as_str()].into_iter());
        assert_eq!(shown, format!("ab[31m, {}…", "x".repeat(NAME_CHARS)));
        assert_eq!(
            listing(["é".repeat(NAME_CHARS).as_str()].into_iter())
                .chars()
                .count(),
            NAME_CHARS
        );
    }

    #[test]
    fn ignores_are_taken_relative_to_the_selection() {
        let ignore = vec![
            "/model_version".to_owned(),
            "/predictions/1".to_owned(),
            "/predictions".to_owned(),
        ];
        assert_eq!(
            relative_ignores(&ignore, "/predictions"),
            vec![vec!["1".to_owned()], vec![]]
        );
        assert_eq!(
            relative_ignores(&ignore[..1], ""),
            vec![vec!["model_version".to_owned()]]
        );
        assert!(relative_ignores(&ignore[..1], "/predictionsX").is_empty());
    }

    #[test]
    fn nesting_is_limited_before_parsing() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nested(MAX_DEPTH + 1).as_bytes()).is_err());
        assert!(parse(nested(1_000_000).as_bytes()).is_err());
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!(r#"{{"a": "{}\\\"{}"}}"#, "[".repeat(100), "{".repeat(100));
        assert!(!nesting_exceeds(text.as_bytes(), 2), "{text}");
        assert!(nesting_depth_exceeds(b"[[[]]]", 2) && !nesting_depth_exceeds(b"[[]][[]]", 2));
        assert!(parse(text.as_bytes()).is_ok());
    }
}

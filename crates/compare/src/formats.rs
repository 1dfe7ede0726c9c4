//! The prediction formats users send through veer, and what they mean for comparison.
//!
//! - KServe V1 and TF Serving: `{"predictions": [...]}`.
//! - Open Inference Protocol V2 (KServe V2, Triton):
//!   `{"outputs": [{"name", "datatype", "shape", "data"}]}`. Outputs are compared **by
//!   name, not position** ([`normalize`] turns the list into an object keyed by name),
//!   so a server that orders its outputs differently does not diverge.
//! - MLflow `/invocations`: `{"predictions": ...}` or a bare list.
//!
//! Classification outputs also yield labels ([`labels`]): the argmax of each row of
//! class probabilities, or the label strings themselves (V2 `BYTES`), so a report can
//! say whether the predicted class flipped, not only how far probabilities moved. An
//! answer of several outputs (KServe's V2 `probability` and `label`, say) is judged
//! by those of its outputs that are labels, paired by name ([`label_agreement`]); the
//! others are left to the numeric comparison.
//!
//! Binary classifiers often answer one score per row instead: `[0.83, 0.12]`,
//! `[[0.83], [0.12]]`, or a V2 output of shape `[n]` or `[n, 1]`. Such a score is a
//! label only under `[routes.compare] threshold = t`: at or above `t` it is class 1,
//! below it class 0 ([`numbers::score_class`]; `t` itself is class 1). Without a
//! threshold a lone score is not a label (it is as likely a regression output). With
//! one, a flat list of numbers is read as one score per row, even when it happens to
//! sum to 1: the route declared its model a binary scorer, and a batch must not be
//! read one way or the other depending on its values. Rows of two or more class
//! probabilities are read by argmax whatever the threshold.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::json::sorted_members;
use crate::numbers;
use sonic_rs::{
    JsonContainerTrait, JsonNumberTrait, JsonValueMutTrait, JsonValueTrait, Object, Value, ValueRef,
};

/// V2 `outputs` (or a selected list of named outputs) as an object keyed by name;
/// anything else as it is, borrowed.
pub fn normalize(value: &Value) -> Cow<'_, Value> {
    if let Some(outputs) = value.get("outputs") {
        let Some(by_name) = by_name(outputs) else {
            return Cow::Borrowed(value);
        };
        let mut owned = value.clone();
        if let Some(slot) = owned.as_object_mut().and_then(|m| m.get_mut(&"outputs")) {
            *slot = by_name;
        }
        return Cow::Owned(owned);
    }
    by_name(value).map_or(Cow::Borrowed(value), Cow::Owned)
}

/// `[{"name": "a", ...}, {"name": "b", ...}]` → `{"a": {...}, "b": {...}}` when every
/// element is an object with a distinct string name.
fn by_name(list: &Value) -> Option<Value> {
    let mut map = Object::new();
    for (name, output) in named_outputs_list(list)? {
        map.insert(name, output.clone());
    }
    Some(map.into())
}

/// A list of V2-style outputs, each with its name, in the list's order: `None` unless
/// the list is not empty and every element is an object with a string `name` that
/// no other element has. This is what [`normalize`] keys by name, and what a
/// `select` segment names an output in.
pub fn named_outputs_list(list: &Value) -> Option<Vec<(&str, &Value)>> {
    let items = list.as_array()?;
    if items.is_empty() {
        return None;
    }
    // Repeated names are found with a set: one lookup each, whatever the object's
    // own representation makes of `contains_key`.
    let mut names = HashSet::with_capacity(items.len());
    items
        .iter()
        .map(|item| {
            let name = item.get("name")?.as_str()?;
            names.insert(name).then_some((name, item))
        })
        .collect()
}

/// A predicted class: an index into class probabilities, or a label string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label<'a> {
    /// Argmax of a probability row, or a binary score's class (1 at or above the
    /// threshold, 0 below).
    Index(usize),
    /// A label as the model named it.
    Text(&'a str),
}

/// Whether two (normalized) answers predict the same classes, binary scores read
/// against `threshold`; `None` when they have no label output in common.
///
/// An answer's prediction is its `predictions` (else its `outputs`) member, followed
/// as deep as it goes. A prediction is either one output (a list, or a V2 output: an
/// object with `data`) or several named outputs (V2 outputs keyed by name, or a V1
/// object of named values, read alike). Named outputs are paired by name, level by
/// level, and agreement is judged over the pairs where **both** sides yield labels:
/// `Some(true)` when every such pair predicts the same classes, `Some(false)` when
/// any does not, `None` when there is no such pair. So a KServe answer with a
/// `probability` and a `label` output is judged by its labels, its probabilities
/// left to the numeric comparison (or judged too, as binary scores, under a
/// threshold); an output present on one side only, or a label on one side and not on
/// the other, is a structural or numeric difference, not a label verdict.
pub fn label_agreement(live: &Value, shadow: &Value, threshold: Option<f64>) -> Option<bool> {
    agreement_at(live, shadow, threshold, 0)
}

/// Hard cap on nesting followed while looking for labels.
const MAX_LABEL_DEPTH: usize = 8;

fn agreement_at(
    live: &Value,
    shadow: &Value,
    threshold: Option<f64>,
    depth: usize,
) -> Option<bool> {
    if depth > MAX_LABEL_DEPTH {
        return None;
    }
    // Each side's wrapper is opened on its own (one may say `predictions` and the
    // other be a bare list); both at once when both have one, so the walk reads the
    // same whichever side is live.
    match (prediction_in(live), prediction_in(shadow)) {
        (None, None) => {}
        (l, s) => {
            return agreement_at(l.unwrap_or(live), s.unwrap_or(shadow), threshold, depth + 1)
        }
    }
    match (named_outputs(live), named_outputs(shadow)) {
        (Some(l), Some(s)) => named_agreement(l, s, threshold, depth),
        (None, None) => Some(labels(live, threshold)? == labels(shadow, threshold)?),
        // Named outputs against a single one: no name in common.
        _ => None,
    }
}

/// The prediction an answer wraps: its `predictions`, else its `outputs` member
/// (never a V2 output's own members).
fn prediction_in(value: &Value) -> Option<&Value> {
    let map = value.as_object()?;
    if map.contains_key(&"data") {
        return None;
    }
    map.get(&"predictions").or_else(|| map.get(&"outputs"))
}

/// An object of named outputs: any object but a V2 output (one with `data`).
fn named_outputs(value: &Value) -> Option<&Object> {
    value.as_object().filter(|map| !map.contains_key(&"data"))
}

/// [`label_agreement`] over named outputs: the names on both sides, in one sorted
/// order (the sides may list them in different orders; a repeated name counts once,
/// its first occurrence, as the structural comparison pairs it).
fn named_agreement(
    live: &Object,
    shadow: &Object,
    threshold: Option<f64>,
    depth: usize,
) -> Option<bool> {
    let (live, shadow) = (sorted_members(live.iter()), sorted_members(shadow.iter()));
    let mut shadow = shadow.into_iter().peekable();
    let mut agreement = None;
    for (name, live) in live {
        while shadow.next_if(|(other, _)| *other < name).is_some() {}
        let Some((_, shadow)) = shadow.next_if(|(other, _)| *other == name) else {
            continue;
        };
        match agreement_at(live, shadow, threshold, depth + 1) {
            // One disagreeing output settles it.
            Some(false) => return Some(false),
            Some(true) => agreement = Some(true),
            None => {}
        }
    }
    agreement
}

/// The predicted classes of one output (a list, or a V2 output), if it is a
/// classification output; binary scores are classes only under a `threshold`.
pub fn labels(output: &Value, threshold: Option<f64>) -> Option<Vec<Label<'_>>> {
    match output.as_ref() {
        ValueRef::Array(items) => array_labels(items, threshold),
        ValueRef::Object(map) => v2_output_labels(output, map.get(&"data")?, threshold),
        _ => None,
    }
}

fn array_labels(items: &[Value], threshold: Option<f64>) -> Option<Vec<Label<'_>>> {
    // The first item decides the shape; one pass then reads every item once.
    match items.first()?.as_ref() {
        ValueRef::String(_) => items.iter().map(|i| i.as_str().map(Label::Text)).collect(),
        ValueRef::Array(_) => items
            .iter()
            .map(|row| match row.as_ref() {
                ValueRef::Array(row) => row_class(row, threshold).map(Label::Index),
                _ => None,
            })
            .collect(),
        ValueRef::Number(_) => match threshold {
            // Under a threshold a flat list is one binary score per row, even one
            // that sums to 1 (the module overview says why).
            Some(t) => items
                .iter()
                .map(|score| as_f64(score).map(|v| Label::Index(numbers::score_class(v, t))))
                .collect(),
            None => {
                // One flat row is a single probability vector only when it looks
                // like one: otherwise it is as likely a list of regression outputs.
                let values = items.iter().map(as_f64).collect::<Option<Vec<f64>>>()?;
                if !numbers::is_distribution(values.iter().copied()) {
                    return None;
                }
                numbers::argmax(values).map(|class| vec![Label::Index(class)])
            }
        },
        _ => None,
    }
}

/// V2 output: label strings (`BYTES`), `[n, k]`-shaped probabilities (k ≥ 2), or,
/// under a threshold, `[n]`- or `[n, 1]`-shaped binary scores.
fn v2_output_labels<'a>(
    output: &'a Value,
    data: &'a Value,
    threshold: Option<f64>,
) -> Option<Vec<Label<'a>>> {
    let data = data.as_array()?;
    if data.is_empty() {
        return None;
    }
    if data.iter().all(|d| d.is_str()) {
        return Some(
            data.iter()
                .filter_map(|d| d.as_str())
                .map(Label::Text)
                .collect(),
        );
    }
    let shape = output.get("shape")?;
    let shape = shape.as_array()?;
    // Both dimensions come from a backend's answer: multiplied with a check, so a
    // shape of [2^40, 2^40] is simply not a match for the data.
    let dimension = |i: usize| {
        shape
            .get(i)
            .and_then(|d| d.as_u64())
            .and_then(|d| usize::try_from(d).ok())
    };
    // `[n]` is n rows of one score, like `[n, 1]`.
    let (rows, per_row) = match shape.len() {
        1 => (dimension(0)?, 1),
        2 => (dimension(0)?, dimension(1)?),
        _ => return None,
    };
    if per_row == 0 || rows.checked_mul(per_row) != Some(data.len()) {
        return None;
    }
    data.chunks(per_row)
        .map(|row| row_class(row, threshold).map(Label::Index))
        .collect()
}

/// A row's class ([`numbers::Argmax::class`]): the index of the first largest of at
/// least two numbers (ties go to the lower class), or a lone score's class under a
/// threshold; `None` when any item is not a number.
fn row_class(row: &[Value], threshold: Option<f64>) -> Option<usize> {
    let mut argmax = numbers::Argmax::default();
    for item in row {
        argmax.push(as_f64(item)?);
    }
    argmax.class(threshold)
}

/// A number's value, straight from the parsed number (sonic-rs's `Value::as_f64`
/// takes a slower general path).
fn as_f64(value: &Value) -> Option<f64> {
    match value.as_ref() {
        ValueRef::Number(n) => n.as_f64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        sonic_rs::from_str(text).unwrap()
    }

    #[test]
    fn v2_outputs_are_keyed_by_name() {
        let doc = json(r#"{"outputs": [{"name": "b", "data": [1]}, {"name": "a", "data": [2]}]}"#);
        assert_eq!(
            normalize(&doc).into_owned(),
            json(
                r#"{"outputs": {"a": {"name": "a", "data": [2]}, "b": {"name": "b", "data": [1]}}}"#
            )
        );
        let duplicate = json(r#"{"outputs": [{"name": "a"}, {"name": "a"}]}"#);
        assert_eq!(normalize(&duplicate).into_owned(), duplicate);
    }

    #[test]
    fn probability_rows_yield_argmax_labels() {
        let rows = json(r#"[[0.1, 0.9], [0.7, 0.3]]"#);
        assert_eq!(
            labels(&rows, None),
            Some(vec![Label::Index(1), Label::Index(0)])
        );
        assert_eq!(
            labels(&json(r#"[0.2, 0.8]"#), None),
            Some(vec![Label::Index(1)])
        );
        assert_eq!(
            labels(&json(r#"[3.5, 7.25]"#), None),
            None,
            "regression outputs are not classes"
        );
        assert_eq!(labels(&json(r#"[0.9]"#), None), None);
        assert_eq!(
            labels(&json(r#"{"predictions": [[0.1, 0.9]]}"#), None),
            None,
            "one output, not an answer: label_agreement opens the wrapper"
        );
    }

    #[test]
    fn v2_bytes_and_shaped_probabilities_yield_labels() {
        let bytes =
            json(r#"{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}"#);
        assert_eq!(
            labels(&bytes, None),
            Some(vec![Label::Text("cat"), Label::Text("dog")])
        );
        let probs = json(
            r#"{"name": "p", "datatype": "FP32", "shape": [2, 3], "data": [0.1, 0.2, 0.7, 0.5, 0.4, 0.1]}"#,
        );
        assert_eq!(
            labels(&probs, None),
            Some(vec![Label::Index(2), Label::Index(0)])
        );
        let overflowing =
            json(r#"{"name": "p", "shape": [4294967296, 4294967296], "data": [0.1, 0.9]}"#);
        assert_eq!(labels(&overflowing, None), None);
        let empty = json(r#"{"name": "p", "shape": [0, 2], "data": []}"#);
        assert_eq!(labels(&empty, None), None, "no prediction, no label");
    }

    #[test]
    fn binary_scores_are_labels_only_under_a_threshold() {
        let half = Some(0.5);
        let (flat, rows) = (json("[0.83, 0.12]"), json("[[0.83], [0.12]]"));
        for scores in [&flat, &rows] {
            assert_eq!(labels(scores, None), None, "{scores}");
            assert_eq!(
                labels(scores, half),
                Some(vec![Label::Index(1), Label::Index(0)])
            );
        }
        assert_eq!(
            labels(&json("[0.5, 0.49999]"), half),
            Some(vec![Label::Index(1), Label::Index(0)]),
            "the threshold itself is class 1"
        );
        assert_eq!(
            labels(&json("[0.3, 0.7]"), half),
            Some(vec![Label::Index(0), Label::Index(1)]),
            "under a threshold a flat list is scores, even one summing to 1"
        );
        assert_eq!(
            labels(&json("[[0.3, 0.7], [0.6, 0.4]]"), Some(0.9)),
            Some(vec![Label::Index(1), Label::Index(0)]),
            "rows of class probabilities are read by argmax whatever the threshold"
        );
        assert_eq!(labels(&json(r#"[0.83, "x"]"#), half), None);
        for shape in ["[2]", "[2, 1]"] {
            let v2 = json(&format!(
                r#"{{"name": "probability", "datatype": "FP32", "shape": {shape}, "data": [0.83, 0.12]}}"#
            ));
            assert_eq!(labels(&v2, None), None, "{shape}");
            assert_eq!(
                labels(&v2, half),
                Some(vec![Label::Index(1), Label::Index(0)]),
                "{shape}"
            );
        }
        let misshapen = json(r#"{"name": "p", "shape": [3], "data": [0.83, 0.12]}"#);
        assert_eq!(labels(&misshapen, half), None);
    }

    /// Label agreement of two answers as the full comparison sees them.
    fn agree(live: &str, shadow: &str, threshold: Option<f64>) -> Option<bool> {
        let (live, shadow) = (json(live), json(shadow));
        let (live, shadow) = (normalize(&live), normalize(&shadow));
        let there = label_agreement(&live, &shadow, threshold);
        let back = label_agreement(&shadow, &live, threshold);
        assert_eq!(there, back, "the same whichever side is live");
        there
    }

    #[test]
    fn agreement_needs_labels_on_both_sides() {
        let (a, b) = (r#"{"predictions": ["yes"]}"#, r#"{"predictions": ["no"]}"#);
        assert_eq!(agree(a, b, None), Some(false));
        assert_eq!(agree(a, a, None), Some(true));
        assert_eq!(agree(a, r#"{"predictions": [1.5]}"#, None), None);
        assert_eq!(agree(a, r#"["yes"]"#, None), Some(true), "wrapped or bare");
        assert_eq!(agree(r#"{"outputs": ["x"]}"#, r#"["x"]"#, None), Some(true));
    }

    /// KServe 0.21's V2 answer for a binary classifier: a score and a label per row.
    fn kserve(probability: [f64; 2], label: [&str; 2]) -> String {
        format!(
            r#"{{"model_name": "churn", "outputs": [
                {{"name": "probability", "datatype": "FP32", "shape": [2], "data": [{}, {}]}},
                {{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["{}", "{}"]}}
            ]}}"#,
            probability[0], probability[1], label[0], label[1]
        )
    }

    #[test]
    fn mixed_outputs_are_judged_by_those_that_are_labels() {
        let live = kserve([0.83, 0.12], ["churn", "stay"]);
        // Without a threshold only `label` is a label output.
        let moved = kserve([0.41, 0.12], ["churn", "stay"]);
        assert_eq!(agree(&live, &moved, None), Some(true));
        let flipped = kserve([0.83, 0.12], ["churn", "churn"]);
        assert_eq!(agree(&live, &flipped, None), Some(false));
        // Under one, the probability is judged too: its class flipped.
        assert_eq!(agree(&live, &moved, Some(0.5)), Some(false));
        assert_eq!(
            agree(&live, &kserve([0.79, 0.2], ["churn", "stay"]), Some(0.5)),
            Some(true)
        );
    }

    #[test]
    fn only_outputs_that_are_labels_on_both_sides_count() {
        let live = kserve([0.83, 0.12], ["churn", "stay"]);
        let score_only = r#"{"outputs": [
            {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.83, 0.12]}
        ]}"#;
        assert_eq!(agree(&live, score_only, None), None, "no label in common");
        assert_eq!(agree(&live, score_only, Some(0.5)), Some(true));
        let renamed = r#"{"outputs": [
            {"name": "class", "datatype": "BYTES", "shape": [2], "data": ["stay", "stay"]}
        ]}"#;
        assert_eq!(agree(&live, renamed, None), None, "paired by name only");
        let extra = r#"{"outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["churn", "stay"]},
            {"name": "reason", "datatype": "BYTES", "shape": [2], "data": ["tenure", "price"]}
        ]}"#;
        assert_eq!(agree(&live, extra, None), Some(true));
        let numeric_label = r#"{"outputs": [
            {"name": "label", "datatype": "FP32", "shape": [2], "data": [1.5, 0.0]}
        ]}"#;
        assert_eq!(agree(&live, numeric_label, None), None);
        assert_eq!(
            agree(&live, r#"{"outputs": [0.83, 0.12]}"#, Some(0.5)),
            None,
            "named outputs against a single one"
        );
    }

    #[test]
    fn a_v1_object_of_named_values_is_read_like_v2_outputs() {
        let live = r#"{"predictions": {"scores": [[0.2, 0.8]], "latency_ms": [3.5, 7.25]}}"#;
        let same = r#"{"predictions": {"latency_ms": [9.0, 1.0], "scores": [[0.3, 0.7]]}}"#;
        assert_eq!(agree(live, same, None), Some(true));
        let flipped = r#"{"predictions": {"scores": [[0.7, 0.3]], "latency_ms": [3.5, 7.25]}}"#;
        assert_eq!(agree(live, flipped, None), Some(false));
        let nested = r#"{"a": {"b": ["x"], "c": [1.5]}, "d": 3}"#;
        assert_eq!(agree(nested, nested, None), Some(true));
        assert_eq!(
            agree(r#"{"d": 3, "e": "x"}"#, r#"{"d": 3, "e": "x"}"#, None),
            None
        );
    }
}

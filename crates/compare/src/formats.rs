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
//! say whether the predicted class flipped, not only how far probabilities moved.
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
    let items = list.as_array()?;
    if items.is_empty() {
        return None;
    }
    let mut map = Object::new();
    // Repeated names are found with a set: one lookup each, whatever the object's
    // own representation makes of `contains_key`.
    let mut names = HashSet::with_capacity(items.len());
    for item in items.iter() {
        let name = item.get("name")?.as_str()?;
        if !names.insert(name) {
            return None;
        }
        map.insert(name, item.clone());
    }
    Some(map.into())
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
/// against `threshold`; `None` when either is not a classification output.
pub fn label_agreement(live: &Value, shadow: &Value, threshold: Option<f64>) -> Option<bool> {
    Some(labels(live, threshold)? == labels(shadow, threshold)?)
}

/// Hard cap on nesting followed while looking for labels.
const MAX_LABEL_DEPTH: usize = 8;

/// The predicted classes in a prediction, if it is a classification output; binary
/// scores are classes only under a `threshold`.
pub fn labels(value: &Value, threshold: Option<f64>) -> Option<Vec<Label<'_>>> {
    labels_at(value, threshold, 0)
}

fn labels_at(value: &Value, threshold: Option<f64>, depth: usize) -> Option<Vec<Label<'_>>> {
    if depth > MAX_LABEL_DEPTH {
        return None;
    }
    match value.as_ref() {
        ValueRef::Array(items) => array_labels(items, threshold),
        ValueRef::Object(map) => {
            if let Some(data) = map.get(&"data") {
                return v2_output_labels(value, data, threshold);
            }
            for key in ["predictions", "outputs"] {
                if let Some(inner) = map.get(&key) {
                    return labels_at(inner, threshold, depth + 1);
                }
            }
            // Several named outputs: the labels of every output, in name order (the
            // two sides may list their outputs in different orders).
            let mut outputs: Vec<(&str, &Value)> = map.iter().collect();
            outputs.sort_unstable_by_key(|(name, _)| *name);
            let mut all = Vec::new();
            for (_, inner) in outputs {
                all.extend(labels_at(inner, threshold, depth + 1)?);
            }
            (!all.is_empty()).then_some(all)
        }
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

    fn normalize_owned(value: Value) -> Value {
        normalize(&value).into_owned()
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
        let v1 = json(r#"{"predictions": [[0.1, 0.9], [0.7, 0.3]]}"#);
        assert_eq!(
            labels(&v1, None),
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
    }

    #[test]
    fn v2_bytes_and_shaped_probabilities_yield_labels() {
        let bytes = normalize_owned(json(
            r#"{"outputs": [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}]}"#,
        ));
        assert_eq!(
            labels(&bytes, None),
            Some(vec![Label::Text("cat"), Label::Text("dog")])
        );
        let probs = normalize_owned(json(
            r#"{"outputs": [{"name": "p", "datatype": "FP32", "shape": [2, 3], "data": [0.1, 0.2, 0.7, 0.5, 0.4, 0.1]}]}"#,
        ));
        assert_eq!(
            labels(&probs, None),
            Some(vec![Label::Index(2), Label::Index(0)])
        );
        let overflowing = normalize_owned(json(
            r#"{"outputs": [{"name": "p", "shape": [4294967296, 4294967296], "data": [0.1, 0.9]}]}"#,
        ));
        assert_eq!(labels(&overflowing, None), None);
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
            let v2 = normalize_owned(json(&format!(
                r#"{{"outputs": [{{"name": "probability", "datatype": "FP32", "shape": {shape}, "data": [0.83, 0.12]}}]}}"#
            )));
            assert_eq!(labels(&v2, None), None, "{shape}");
            assert_eq!(
                labels(&v2, half),
                Some(vec![Label::Index(1), Label::Index(0)]),
                "{shape}"
            );
        }
        let misshapen = normalize_owned(json(
            r#"{"outputs": [{"name": "p", "shape": [3], "data": [0.83, 0.12]}]}"#,
        ));
        assert_eq!(labels(&misshapen, half), None);
    }

    #[test]
    fn agreement_needs_labels_on_both_sides() {
        let (a, b) = (
            json(r#"{"predictions": ["yes"]}"#),
            json(r#"{"predictions": ["no"]}"#),
        );
        assert_eq!(label_agreement(&a, &b, None), Some(false));
        assert_eq!(label_agreement(&a, &a, None), Some(true));
        assert_eq!(
            label_agreement(&a, &json(r#"{"predictions": [1.5]}"#), None),
            None
        );
    }
}

//! The comparison as a user meets it: real prediction formats, every mode, and
//! properties that must hold for any input.

use proptest::prelude::*;
use serde_json::{json, Value};
use veer_compare::{compare, Answer, Comparison, Outcome};
use veer_config::{Compare, CompareMode};

fn json_settings() -> Compare {
    Compare {
        abs_tolerance: 0.01,
        ..Compare::default()
    }
}

fn judge(settings: &Compare, live: &Value, shadow: &Value) -> Comparison {
    let (l, s) = (live.to_string(), shadow.to_string());
    compare(
        settings,
        Answer {
            status: 200,
            body: l.as_bytes(),
        },
        Answer {
            status: 200,
            body: s.as_bytes(),
        },
    )
}

#[test]
fn kserve_v1_within_tolerance_matches_and_reports_the_deviation() {
    let c = judge(
        &json_settings(),
        &json!({"predictions": [[0.1, 0.9], [0.8, 0.2]]}),
        &json!({"predictions": [[0.105, 0.895], [0.8, 0.2]]}),
    );
    assert_eq!(c.outcome, Outcome::Match);
    assert!((c.max_abs_deviation.unwrap() - 0.005).abs() < 1e-9);
    assert_eq!(c.label_agreement, Some(true));
}

#[test]
fn kserve_v1_flipped_class_diverges_with_pointers_and_label_disagreement() {
    let c = judge(
        &json_settings(),
        &json!({"predictions": [[0.1, 0.9], [0.8, 0.2]]}),
        &json!({"predictions": [[0.6, 0.4], [0.8, 0.2]]}),
    );
    assert_eq!(c.outcome, Outcome::Diverged);
    let pointers: Vec<&str> = c.differences.iter().map(|d| d.pointer.as_str()).collect();
    assert_eq!(pointers, ["/predictions/0/0", "/predictions/0/1"]);
    assert_eq!(c.differences[0].live, Some(json!(0.1)));
    assert_eq!(c.differences[0].shadow, Some(json!(0.6)));
    assert!((c.max_abs_deviation.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(c.label_agreement, Some(false));
}

#[test]
fn a_shadow_scoring_higher_shifts_up_more_than_down() {
    // Binary scores: v2 scores two rows higher and one lower, by more in total.
    let c = judge(
        &json_settings(),
        &json!({"predictions": [0.20, 0.50, 0.90], "model_version": 1}),
        &json!({"predictions": [0.35, 0.70, 0.85], "model_version": 2}),
    );
    assert_eq!(c.outcome, Outcome::Diverged, "the full walk");
    assert!(
        (c.shift.up - (0.15 + 0.20 + 1.0)).abs() < 1e-9,
        "{:?}",
        c.shift
    );
    assert!((c.shift.down - 0.05).abs() < 1e-9, "{:?}", c.shift);
    assert_eq!(c.shift.numbers, 4, "model_version is a number too");
    assert!(c.shift.up > c.shift.down);
    // The fast path (a match within tolerance) counts the same way.
    let c = judge(
        &json_settings(),
        &json!({"predictions": [0.200, 0.500]}),
        &json!({"predictions": [0.205, 0.498]}),
    );
    assert_eq!(c.outcome, Outcome::Match);
    assert!((c.shift.up - 0.005).abs() < 1e-9 && (c.shift.down - 0.002).abs() < 1e-9);
    assert_eq!(c.shift.numbers, 2);
    assert!(c.shift.mean().is_some_and(|m| m > 0.0));
}

#[test]
fn open_inference_v2_outputs_are_compared_by_name_not_position() {
    let live = json!({"model_name": "churn", "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.3, 0.7]},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["churn"]}
    ]});
    let shadow = json!({"model_name": "churn", "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["churn"]},
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.305, 0.695]}
    ]});
    let c = judge(&json_settings(), &live, &shadow);
    assert_eq!(c.outcome, Outcome::Match, "{c:?}");
    assert_eq!(c.label_agreement, Some(true));

    let flipped = json!({"outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["stay"]},
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.6, 0.4]}
    ]});
    let settings = Compare {
        select: vec!["/outputs".into()],
        ..json_settings()
    };
    let c = judge(&settings, &live, &flipped);
    assert_eq!(c.outcome, Outcome::Diverged);
    assert_eq!(c.differences[0].pointer, "/outputs/label/data/0");
    assert_eq!(c.label_agreement, Some(false));
}

/// KServe 0.21's V2 (Open Inference) answer for a binary classifier: a probability
/// and a label per row, as two outputs.
fn kserve_v2(probability: [f64; 2], label: [&str; 2]) -> Value {
    json!({"model_name": "churn", "outputs": [
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": probability},
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": label}
    ]})
}

#[test]
fn an_answer_of_a_probability_and_a_label_is_judged_by_its_label() {
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let c = judge(&json_settings(), &live, &live);
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));

    let flipped = kserve_v2([0.83, 0.12], ["churn", "churn"]);
    let c = judge(&json_settings(), &live, &flipped);
    assert_eq!(
        (c.outcome, c.label_agreement),
        (Outcome::Diverged, Some(false))
    );
    assert_eq!(c.differences[0].pointer, "/outputs/label/data/1");

    let moved = kserve_v2([0.835, 0.115], ["churn", "stay"]);
    let c = judge(&json_settings(), &live, &moved);
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
    assert!((c.max_abs_deviation.unwrap() - 0.005).abs() < 1e-6);
}

#[test]
fn under_a_threshold_the_probability_output_is_a_label_too() {
    let settings = Compare {
        threshold: Some(0.5),
        ..json_settings()
    };
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    // The label output agrees, but the probability's class flipped: one label
    // output that disagrees is a disagreement.
    let c = judge(
        &settings,
        &live,
        &kserve_v2([0.41, 0.12], ["churn", "stay"]),
    );
    assert_eq!(
        (c.outcome, c.label_agreement),
        (Outcome::Diverged, Some(false))
    );
    let c = judge(
        &settings,
        &live,
        &kserve_v2([0.79, 0.12], ["churn", "stay"]),
    );
    assert_eq!(c.label_agreement, Some(true));
}

#[test]
fn label_outputs_are_paired_by_name_and_counted_only_on_both_sides() {
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let without_label = json!({"model_name": "churn", "outputs": [
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.83, 0.12]}
    ]});
    let c = judge(&json_settings(), &live, &without_label);
    assert_eq!(
        (c.outcome, c.label_agreement),
        (Outcome::Diverged, None),
        "the missing output is a difference; there is no label in common"
    );
    let with_more = json!({"model_name": "churn", "outputs": [
        {"name": "reason", "datatype": "BYTES", "shape": [2], "data": ["tenure", "price"]},
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["churn", "stay"]},
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.83, 0.12]}
    ]});
    let c = judge(&json_settings(), &live, &with_more);
    assert_eq!(
        (c.outcome, c.label_agreement),
        (Outcome::Diverged, Some(true))
    );
}

#[test]
fn a_v1_object_of_named_values_is_judged_by_those_that_are_labels() {
    let live = json!({"predictions": {"probabilities": [[0.2, 0.8]], "latency_ms": [3.5, 7.25]}});
    let shadow =
        json!({"predictions": {"probabilities": [[0.205, 0.795]], "latency_ms": [3.5, 7.25]}});
    let c = judge(&json_settings(), &live, &shadow);
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
}

/// The three shapes a binary classifier answers in: a flat list of scores, rows of
/// one score, and V2 outputs of shape `[n]` and `[n, 1]`.
fn binary_scores(scores: [f64; 2]) -> [Value; 4] {
    let v2 = |shape: Value| {
        json!({"model_name": "churn", "outputs": [
            {"name": "probability", "datatype": "FP32", "shape": shape, "data": scores}
        ]})
    };
    [
        json!({ "predictions": scores }),
        json!({ "predictions": [[scores[0]], [scores[1]]] }),
        v2(json!([2])),
        v2(json!([2, 1])),
    ]
}

#[test]
fn binary_scores_are_labels_under_a_threshold() {
    let settings = Compare {
        threshold: Some(0.5),
        ..json_settings()
    };
    let live = binary_scores([0.83, 0.12]);
    for (live, (near, flipped)) in live.iter().zip(
        binary_scores([0.79, 0.12])
            .iter()
            .zip(binary_scores([0.41, 0.12]).iter()),
    ) {
        // 0.83 vs 0.79: both class 1, so the labels agree, though the score moved
        // beyond the 0.01 tolerance.
        let c = judge(&settings, live, near);
        assert_eq!(c.label_agreement, Some(true), "{live} vs {near}");
        assert_eq!(c.outcome, Outcome::Diverged, "{live} vs {near}");
        let wide = Compare {
            abs_tolerance: 0.05,
            ..settings.clone()
        };
        let c = judge(&wide, live, near);
        assert_eq!(
            (c.outcome, c.label_agreement),
            (Outcome::Match, Some(true)),
            "{live} vs {near}"
        );
        // 0.83 vs 0.41: the class flipped, and the score is beyond tolerance.
        let c = judge(&settings, live, flipped);
        assert_eq!(
            (c.outcome, c.label_agreement),
            (Outcome::Diverged, Some(false)),
            "{live} vs {flipped}"
        );
    }
}

#[test]
fn without_a_threshold_a_binary_score_is_not_a_label() {
    for (live, shadow) in binary_scores([0.83, 0.12])
        .iter()
        .zip(binary_scores([0.41, 0.12]).iter())
    {
        let c = judge(&json_settings(), live, shadow);
        assert_eq!(
            (c.outcome, c.label_agreement),
            (Outcome::Diverged, None),
            "{live}"
        );
    }
}

#[test]
fn a_score_at_the_threshold_is_class_1_and_a_match_can_still_flip_the_class() {
    let settings = Compare {
        threshold: Some(0.5),
        ..json_settings()
    };
    let (live, shadow) = (
        json!({"predictions": [0.5]}),
        json!({"predictions": [0.495]}),
    );
    let c = judge(&settings, &live, &shadow);
    assert_eq!(
        (c.outcome, c.label_agreement),
        (Outcome::Match, Some(false)),
        "within tolerance, on either side of the threshold"
    );
    let quick = veer_compare::lockstep::quick_match(
        &settings,
        live.to_string().as_bytes(),
        shadow.to_string().as_bytes(),
    );
    assert_eq!(
        quick
            .expect("a plain match takes the fast path")
            .label_agreement,
        Some(false)
    );
}

#[test]
fn rows_of_class_probabilities_use_argmax_whatever_the_threshold() {
    let settings = Compare {
        threshold: Some(0.9),
        ..json_settings()
    };
    let c = judge(
        &settings,
        &json!({"predictions": [[0.3, 0.7], [0.8, 0.2]]}),
        &json!({"predictions": [[0.305, 0.695], [0.8, 0.2]]}),
    );
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
}

#[test]
fn select_and_ignore_narrow_what_is_compared() {
    let settings = Compare {
        select: vec!["/predictions".into()],
        ignore: vec!["/model_version".into(), "/predictions/1".into()],
        ..json_settings()
    };
    let c = judge(
        &settings,
        &json!({"predictions": [1, 2], "model_version": "v1", "latency_ms": 3}),
        &json!({"predictions": [1, 99], "model_version": "v2", "latency_ms": 9}),
    );
    assert_eq!(c.outcome, Outcome::Match, "{c:?}");
    let missing = judge(
        &settings,
        &json!({"predictions": [1]}),
        &json!({"outputs": [1]}),
    );
    assert_eq!(
        missing.outcome,
        Outcome::ShadowError(
            "the shadow answer has no value at select pointer /predictions (at the top its keys are: outputs)".into()
        )
    );
}

/// `settings` with `select` set to `pointers`.
fn selecting(pointers: &[&str], settings: Compare) -> Compare {
    Compare {
        select: pointers.iter().map(|p| p.to_string()).collect(),
        ..settings
    }
}

/// `kserve_v2` with its outputs listed in the other order.
fn reversed_outputs(mut answer: Value) -> Value {
    if let Some(outputs) = answer["outputs"].as_array_mut() {
        outputs.reverse();
    }
    answer
}

fn pointers(c: &Comparison) -> Vec<&str> {
    c.differences.iter().map(|d| d.pointer.as_str()).collect()
}

#[test]
fn select_names_a_v2_output_as_ignore_does() {
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let label = selecting(&["/outputs/label"], json_settings());

    let flipped = kserve_v2([0.83, 0.12], ["churn", "churn"]);
    let c = judge(&label, &live, &flipped);
    assert_eq!(
        (&c.outcome, c.label_agreement),
        (&Outcome::Diverged, Some(false))
    );
    assert_eq!(pointers(&c), ["/outputs/label/data/1"]);
    assert_eq!(c.differences[0].live, Some(json!("stay")));
    assert_eq!(c.differences[0].shadow, Some(json!("churn")));

    // Only the label is compared: a probability far off does not count.
    let moved = kserve_v2([0.41, 0.12], ["churn", "stay"]);
    let c = judge(&label, &live, &moved);
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
    assert_eq!(
        c.max_abs_deviation,
        Some(0.0),
        "the only numbers compared are the label output's shape"
    );

    // The probabilities alone, within tolerance.
    let probability = selecting(&["/outputs/probability"], json_settings());
    let near = kserve_v2([0.835, 0.115], ["stay", "stay"]);
    let c = judge(&probability, &live, &near);
    assert_eq!(c.outcome, Outcome::Match, "{c:?}");
    assert!((c.max_abs_deviation.unwrap() - 0.005).abs() < 1e-6);
    assert_eq!(c.label_agreement, None, "binary scores without a threshold");

    // An output's member, by name too.
    let data = selecting(&["/outputs/label/data"], json_settings());
    let c = judge(&data, &live, &flipped);
    assert_eq!(pointers(&c), ["/outputs/label/data/1"]);
    assert_eq!(c.label_agreement, Some(false));
}

#[test]
fn select_pairs_outputs_by_name_whatever_their_order() {
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let shadow = reversed_outputs(kserve_v2([0.835, 0.12], ["churn", "stay"]));
    for pointer in [
        "/outputs/label",
        "/outputs/probability",
        "/outputs/label/data",
    ] {
        let c = judge(&selecting(&[pointer], json_settings()), &live, &shadow);
        assert_eq!(c.outcome, Outcome::Match, "{pointer}: {c:?}");
    }
    let flipped = reversed_outputs(kserve_v2([0.83, 0.12], ["stay", "stay"]));
    let c = judge(
        &selecting(&["/outputs/label"], json_settings()),
        &live,
        &flipped,
    );
    assert_eq!(pointers(&c), ["/outputs/label/data/0"]);
}

#[test]
fn a_positional_select_still_reads_positions() {
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let second = selecting(&["/outputs/1"], json_settings());
    let c = judge(&second, &live, &kserve_v2([0.83, 0.12], ["churn", "churn"]));
    assert_eq!(pointers(&c), ["/outputs/1/data/1"]);
    assert_eq!(c.label_agreement, Some(false));
    // Each side's second output, whatever its name: here not the same output.
    let c = judge(&second, &live, &reversed_outputs(live.clone()));
    assert_eq!(c.outcome, Outcome::Diverged);
    assert_eq!(
        pointers(&c),
        [
            "/outputs/1/data/0",
            "/outputs/1/data/1",
            "/outputs/1/datatype",
            "/outputs/1/name"
        ]
    );
    // A name wins over a position: an output named "1" is the output named "1".
    let named_by_numbers = |first: f64| {
        json!({"outputs": [
            {"name": "1", "datatype": "FP32", "shape": [1], "data": [first]},
            {"name": "0", "datatype": "FP32", "shape": [1], "data": [0.5]}
        ]})
    };
    let c = judge(&second, &named_by_numbers(0.2), &named_by_numbers(0.9));
    assert_eq!(pointers(&c), ["/outputs/1/data/0"]);
}

#[test]
fn several_select_pointers_are_compared_together() {
    let both = selecting(&["/outputs/probability", "/outputs/label"], json_settings());
    let live = kserve_v2([0.83, 0.12], ["churn", "stay"]);

    let near = reversed_outputs(kserve_v2([0.835, 0.115], ["churn", "stay"]));
    let c = judge(&both, &live, &near);
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
    assert!((c.max_abs_deviation.unwrap() - 0.005).abs() < 1e-6);

    // A label flipped in one part: the pair diverges, and the labels disagree.
    let c = judge(&both, &live, &kserve_v2([0.835, 0.115], ["churn", "churn"]));
    assert_eq!(
        (&c.outcome, c.label_agreement),
        (&Outcome::Diverged, Some(false))
    );
    assert_eq!(pointers(&c), ["/outputs/label/data/1"]);

    // A probability beyond tolerance: diverged, though the labels agree; every
    // part's differences, in the order the parts are listed.
    let c = judge(&both, &live, &kserve_v2([0.41, 0.12], ["churn", "churn"]));
    assert_eq!(c.outcome, Outcome::Diverged);
    assert_eq!(
        pointers(&c),
        ["/outputs/probability/data/0", "/outputs/label/data/1"]
    );
    assert!((c.max_abs_deviation.unwrap() - 0.42).abs() < 1e-6);
    let c = judge(&both, &live, &kserve_v2([0.41, 0.12], ["churn", "stay"]));
    assert_eq!(
        (&c.outcome, c.label_agreement),
        (&Outcome::Diverged, Some(true))
    );

    // Under a threshold the probability is a label too: its flip alone disagrees.
    let scored = Compare {
        threshold: Some(0.5),
        ..both.clone()
    };
    let c = judge(&scored, &live, &kserve_v2([0.41, 0.12], ["churn", "stay"]));
    assert_eq!(c.label_agreement, Some(false));

    // Parts of a V1 answer: the rest is not compared.
    let v1 = selecting(&["/predictions", "/scores/0"], json_settings());
    let c = judge(
        &v1,
        &json!({"predictions": ["churn"], "scores": [0.83, 0.1], "id": 1}),
        &json!({"predictions": ["churn"], "scores": [0.83, 0.9], "id": 2}),
    );
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
}

#[test]
fn a_select_that_finds_nothing_names_the_pointer_and_what_is_there() {
    let answer = kserve_v2([0.83, 0.12], ["churn", "stay"]);
    let without_label = json!({"model_name": "churn", "outputs": [
        {"name": "probability", "datatype": "FP32", "shape": [2], "data": [0.83, 0.12]},
        {"name": "score", "datatype": "FP32", "shape": [2], "data": [1.5, 0.2]}
    ]});
    let label = selecting(&["/outputs/label"], json_settings());
    assert_eq!(
        judge(&label, &without_label, &answer).outcome,
        Outcome::LiveError(
            "the live answer has no value at select pointer /outputs/label (at /outputs its outputs are named: probability, score)".into()
        )
    );
    assert_eq!(
        judge(&label, &answer, &without_label).outcome,
        Outcome::ShadowError(
            "the shadow answer has no value at select pointer /outputs/label (at /outputs its outputs are named: probability, score)".into()
        )
    );
    // One missing part of several is enough, and it is the one named.
    let both = selecting(&["/outputs/probability", "/outputs/label"], json_settings());
    let c = judge(&both, &answer, &without_label);
    assert_eq!(c.outcome.label(), "shadow_error");
    assert!(
        matches!(&c.outcome, Outcome::ShadowError(r) if r.contains("select pointer /outputs/label ")),
        "{c:?}"
    );
    // Other shapes say what they have instead.
    for (answer, instead) in [
        (
            json!({"predictions": [1]}),
            "at the top its keys are: predictions",
        ),
        (
            json!({"outputs": [1, 2]}),
            "at /outputs it has a list of 2 items",
        ),
        (
            json!({"outputs": {"score": 1}}),
            "at /outputs its keys are: score",
        ),
        (
            json!({"outputs": {"label": 1}}),
            "at /outputs/label it has a number",
        ),
        (json!({"outputs": "x"}), "at /outputs it has a string"),
        (json!([1]), "at the top it has a list of 1 item"),
    ] {
        let c = judge(
            &selecting(&["/outputs/label/data"], json_settings()),
            &answer,
            &answer,
        );
        let expected = format!(
            "the live answer has no value at select pointer /outputs/label/data ({instead})"
        );
        assert_eq!(c.outcome, Outcome::LiveError(expected));
    }
    let c = judge(
        &selecting(&["/outputs/label/data/2"], json_settings()),
        &answer,
        &answer,
    );
    assert_eq!(
        c.outcome,
        Outcome::LiveError(
            "the live answer has no value at select pointer /outputs/label/data/2 (at /outputs/label/data it has a list of 2 items)".into()
        )
    );
}

#[test]
fn the_fast_path_leaves_outputs_by_name_and_several_parts_to_the_full_comparison() {
    let live = json!({"predictions": [[0.1, 0.9]], "scores": [0.5]}).to_string();
    let kserve = kserve_v2([0.83, 0.12], ["churn", "stay"]).to_string();
    let quick = |select: &[&str], body: &str| {
        veer_compare::lockstep::quick_match(
            &selecting(select, json_settings()),
            body.as_bytes(),
            body.as_bytes(),
        )
    };
    assert!(quick(&["/predictions"], &live).is_some());
    assert!(quick(&["/predictions", "/scores"], &live).is_none());
    assert!(quick(&["/outputs/label"], &kserve).is_none());
    let c = judge(
        &selecting(&["/predictions", "/scores"], json_settings()),
        &serde_json::from_str(&live).unwrap(),
        &serde_json::from_str(&live).unwrap(),
    );
    assert_eq!((c.outcome, c.label_agreement), (Outcome::Match, Some(true)));
}

#[test]
fn tf_serving_and_mlflow_shapes_compare_too() {
    let tf = judge(
        &json_settings(),
        &json!({"predictions": [{"scores": [0.2, 0.8], "classes": ["a", "b"]}]}),
        &json!({"predictions": [{"scores": [0.2, 0.8], "classes": ["a", "b"]}]}),
    );
    assert_eq!(tf.outcome, Outcome::Match);
    let mlflow = judge(&json_settings(), &json!([12.5, 3.0]), &json!([12.5, 3.25]));
    assert_eq!(mlflow.outcome, Outcome::Diverged);
    assert_eq!(
        mlflow.label_agreement, None,
        "regression outputs have no labels"
    );
}

#[test]
fn structure_differences_are_named() {
    let c = judge(
        &json_settings(),
        &json!({"a": [1, 2], "b": "x", "gone": 1}),
        &json!({"a": [1], "b": "y", "new": 1}),
    );
    let pointers: Vec<&str> = c.differences.iter().map(|d| d.pointer.as_str()).collect();
    assert_eq!(pointers, ["/a", "/b", "/gone", "/new"]);
    assert_eq!(c.differences[2].shadow, None);
    assert_eq!(c.differences[3].live, None);
}

#[test]
fn unparsable_and_failing_sides_are_errors_not_divergences() {
    let s = json_settings();
    let ok = br#"{"predictions": [1]}"#;
    let c = compare(
        &s,
        Answer {
            status: 200,
            body: b"{oops",
        },
        Answer {
            status: 200,
            body: ok,
        },
    );
    assert!(
        matches!(c.outcome, Outcome::LiveError(ref r) if r.starts_with("live body is not JSON")),
        "{c:?}"
    );
    let c = compare(
        &s,
        Answer {
            status: 200,
            body: ok,
        },
        Answer {
            status: 200,
            body: b"NaN",
        },
    );
    assert_eq!(c.outcome.label(), "shadow_error");
    let c = compare(
        &s,
        Answer {
            status: 200,
            body: ok,
        },
        Answer {
            status: 503,
            body: ok,
        },
    );
    assert_eq!(
        c.outcome,
        Outcome::ShadowError("shadow answered 503".into())
    );
    let c = compare(
        &s,
        Answer {
            status: 500,
            body: ok,
        },
        Answer {
            status: 200,
            body: ok,
        },
    );
    assert_eq!(c.outcome.label(), "live_error");
    let c = compare(
        &s,
        Answer {
            status: 200,
            body: ok,
        },
        Answer {
            status: 404,
            body: ok,
        },
    );
    assert_eq!(c.outcome, Outcome::Diverged);
    assert_eq!(c.differences[0].pointer, "status");
}

#[test]
fn status_and_exact_modes() {
    let status = Compare {
        mode: CompareMode::Status,
        ..Compare::default()
    };
    let exact = Compare {
        mode: CompareMode::Exact,
        ..Compare::default()
    };
    let (a, b) = (
        Answer {
            status: 200,
            body: b"1",
        },
        Answer {
            status: 200,
            body: b"2",
        },
    );
    assert_eq!(compare(&status, a, b).outcome, Outcome::Match);
    assert_eq!(compare(&exact, a, b).outcome, Outcome::Diverged);
    assert_eq!(compare(&exact, a, a).outcome, Outcome::Match);
    assert_eq!(
        compare(
            &status,
            a,
            Answer {
                status: 201,
                body: b"1"
            }
        )
        .outcome,
        Outcome::Diverged
    );
}

#[test]
fn nesting_deeper_than_64_levels_is_an_error_not_a_crash() {
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let c = compare(
        &json_settings(),
        Answer {
            status: 200,
            body: deep.as_bytes(),
        },
        Answer {
            status: 200,
            body: deep.as_bytes(),
        },
    );
    assert_eq!(c.outcome.label(), "live_error");
    let ok = format!("{}1{}", "[".repeat(64), "]".repeat(64));
    let c = compare(
        &json_settings(),
        Answer {
            status: 200,
            body: ok.as_bytes(),
        },
        Answer {
            status: 200,
            body: ok.as_bytes(),
        },
    );
    assert_eq!(c.outcome, Outcome::Match);
}

/// No threshold, the usual one, or any.
fn any_threshold() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), Just(Some(0.5)), (0.0f64..1.0).prop_map(Some)]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn comparison_is_symmetric(a in any_json(), b in any_json(), abs in 0.0f64..1.0, rel in 0.0f64..1.0, threshold in any_threshold()) {
        let settings = Compare { abs_tolerance: abs, rel_tolerance: rel, threshold, ..Compare::default() };
        let (ab, ba) = (judge(&settings, &a, &b), judge(&settings, &b, &a));
        prop_assert_eq!(ab.outcome, ba.outcome);
        prop_assert_eq!(ab.max_abs_deviation, ba.max_abs_deviation);
        prop_assert_eq!(ab.label_agreement, ba.label_agreement);
        // Swapped sides move the other way, by exactly as much.
        prop_assert_eq!((ab.shift.up, ab.shift.down, ab.shift.numbers), (ba.shift.down, ba.shift.up, ba.shift.numbers));
        let swapped: Vec<_> = ba.differences.iter().map(|d| (d.pointer.clone(), d.shadow.clone(), d.live.clone())).collect();
        let direct: Vec<_> = ab.differences.iter().map(|d| (d.pointer.clone(), d.live.clone(), d.shadow.clone())).collect();
        prop_assert_eq!(direct, swapped);
    }

    #[test]
    fn every_value_matches_itself(a in any_json()) {
        let c = judge(&Compare { abs_tolerance: 0.0, ..Compare::default() }, &a, &a);
        prop_assert_eq!(c.outcome, Outcome::Match);
        prop_assert!(c.max_abs_deviation.is_none_or(|d| d == 0.0));
    }

    #[test]
    fn a_shift_within_tolerance_matches_and_beyond_it_diverges(
        values in prop::collection::vec(-1e6f64..1e6, 1..16),
        at in any::<prop::sample::Index>(),
        shift in 0.0f64..1.0,
    ) {
        let tolerance = 0.5;
        let mut shifted = values.clone();
        let i = at.index(values.len());
        shifted[i] += shift;
        let settings = Compare { abs_tolerance: tolerance, ..Compare::default() };
        let c = judge(&settings, &json!({"predictions": values}), &json!({"predictions": shifted}));
        // The float sum may round: judge by the difference actually representable.
        let actual = (shifted[i] - values[i]).abs();
        let expected = if actual <= tolerance { Outcome::Match } else { Outcome::Diverged };
        prop_assert_eq!(c.outcome, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(live in prop::collection::vec(any::<u8>(), 0..64), shadow in prop::collection::vec(any::<u8>(), 0..64), status in 100u16..600) {
        let c = compare(&json_settings(), Answer { status, body: &live }, Answer { status: 200, body: &shadow });
        // No panic, and the verdict follows the rules whatever the bytes: a failed
        // live side is a live error; a match never lists differences.
        if status >= 500 {
            prop_assert_eq!(c.outcome.label(), "live_error");
        }
        if c.outcome == Outcome::Match {
            prop_assert!(c.differences.is_empty());
        }
    }
}

/// Equal up to the rounding of a sum added in another order.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Prints a value with extra spaces and newlines, as another server might.
fn spaced(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// `value` with every number nudged by up to `by`.
fn nudged(value: &Value, by: f64, seed: &mut u64) -> Value {
    match value {
        Value::Number(n) => {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let shift = ((*seed >> 11) as f64 / (1u64 << 53) as f64) * by;
            match n.as_f64() {
                Some(f) if n.is_f64() => json!(f + shift),
                _ => value.clone(),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| nudged(i, by, seed)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), nudged(v, by, seed)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A prediction-shaped answer: rows of probabilities, labels, flat scores or rows of
/// one score.
fn any_prediction() -> impl Strategy<Value = Value> {
    let row = prop::collection::vec(0.0f64..1.0, 1..5);
    let predictions = prop_oneof![
        prop::collection::vec(row, 1..6).prop_map(|rows| json!(rows)),
        prop::collection::vec("[a-c]{1,3}", 1..4).prop_map(|labels| json!(labels)),
        prop::collection::vec(0.0f64..1.0, 1..5).prop_map(|flat| json!(flat)),
        // Binary scores, rows of one, close to the usual threshold so that a nudge
        // within tolerance can flip a class.
        prop::collection::vec(0.48f64..0.52, 1..6)
            .prop_map(|scores| { json!(scores.iter().map(|s| [*s]).collect::<Vec<_>>()) }),
        any_json(),
    ];
    (predictions, any::<bool>(), "[a-z]{0,3}").prop_map(|(p, wrapped, version)| {
        if wrapped {
            json!({ "predictions": p, "model_version": version })
        } else {
            p
        }
    })
}

proptest! {
    /// The fast path only ever proves what the full comparison finds: whenever the
    /// comparison answers Match without the full walk, the full walk agrees on the
    /// outcome, the deviation and the labels (binary scores under a threshold too).
    #[test]
    fn the_fast_path_agrees_with_the_full_comparison(
        live in any_prediction(),
        by in prop_oneof![Just(0.0), 0.0f64..0.02],
        tolerance in prop_oneof![Just(0.0), Just(0.01), Just(0.05)],
        pretty in any::<bool>(),
        select in prop_oneof![
            Just(vec![]),
            Just(vec!["/predictions".to_owned()]),
            Just(vec!["/predictions".to_owned(), "/model_version".to_owned()]),
        ],
        ignore_version in any::<bool>(),
        threshold in any_threshold(),
        seed in any::<u64>(),
    ) {
        let mut seed = seed;
        let shadow = nudged(&live, by, &mut seed);
        let (l, s) = (live.to_string(), if pretty { spaced(&shadow) } else { shadow.to_string() });
        let settings = Compare {
            abs_tolerance: tolerance,
            select,
            ignore: if ignore_version { vec!["/model_version".into()] } else { vec![] },
            threshold,
            ..Compare::default()
        };
        let full = veer_compare::json::full_comparison(&settings, l.as_bytes(), s.as_bytes());
        if let Some(quick) = veer_compare::lockstep::quick_match(&settings, l.as_bytes(), s.as_bytes()) {
            prop_assert_eq!(&full.outcome, &Outcome::Match, "{} vs {}", l, s);
            prop_assert_eq!(quick.max_abs_deviation, full.max_abs_deviation);
            prop_assert_eq!(quick.label_agreement, full.label_agreement);
            prop_assert_eq!(quick.shift.numbers, full.shift.numbers);
            prop_assert!(close(quick.shift.up, full.shift.up) && close(quick.shift.down, full.shift.down), "{:?} vs {:?}", quick.shift, full.shift);
        }
        let combined = compare(&settings, Answer { status: 200, body: l.as_bytes() }, Answer { status: 200, body: s.as_bytes() });
        prop_assert_eq!(combined.outcome, full.outcome);
        prop_assert_eq!(combined.max_abs_deviation, full.max_abs_deviation);
        prop_assert_eq!(combined.label_agreement, full.label_agreement);
    }

    #[test]
    fn the_fast_path_never_accepts_what_the_parser_rejects(live in prop::collection::vec(any::<u8>(), 0..48), shadow in prop::collection::vec(any::<u8>(), 0..48)) {
        if veer_compare::lockstep::quick_match(&json_settings(), &live, &shadow).is_some() {
            let full = veer_compare::json::full_comparison(&json_settings(), &live, &shadow);
            prop_assert_eq!(full.outcome, Outcome::Match);
        }
    }
}

#[test]
fn the_fast_path_takes_the_common_kserve_pair() {
    let live = json!({"predictions": [[0.1, 0.9], [0.8, 0.2]], "model_version": "v1"});
    let shadow = json!({"predictions": [[0.105, 0.895], [0.8, 0.2]], "model_version": "v2"});
    let settings = Compare {
        ignore: vec!["/model_version".into()],
        ..json_settings()
    };
    let quick = veer_compare::lockstep::quick_match(
        &settings,
        live.to_string().as_bytes(),
        shadow.to_string().as_bytes(),
    );
    let quick = quick.expect("a plain match takes the fast path");
    assert_eq!(quick.label_agreement, Some(true));
    assert!((quick.max_abs_deviation.unwrap() - 0.005).abs() < 1e-12);
}

/// A flat JSON object of `n` keys `k00000`… with value 0.5, in reverse order when
/// `reversed`, with the key at `changed` set to 0.9 and the key at `missing` left out.
fn flat_object(n: usize, reversed: bool, changed: Option<usize>, missing: Option<usize>) -> String {
    let mut keys: Vec<usize> = (0..n).filter(|i| Some(*i) != missing).collect();
    if reversed {
        keys.reverse();
    }
    let members: Vec<String> = keys
        .iter()
        .map(|&i| {
            let value = if Some(i) == changed { 0.9 } else { 0.5 };
            format!("\"k{i:05}\":{value}")
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Object members are paired whatever their order: a 60,000-key answer in the
/// reverse key order is compared key by key, and its differences named. (How its
/// time grows with size is `cargo bench --bench compare`'s "flat object".)
#[test]
fn a_flat_object_of_60k_keys_is_compared_key_by_key_whatever_the_order() {
    let live = flat_object(60_000, false, None, None);
    let shadow = flat_object(60_000, true, Some(31_337), Some(59_999));
    assert!(
        live.len() < 1024 * 1024,
        "under the default compare.max_body"
    );
    fn answer(body: &str) -> Answer<'_> {
        Answer {
            status: 200,
            body: body.as_bytes(),
        }
    }
    let c = compare(&json_settings(), answer(&live), answer(&shadow));
    assert_eq!(c.outcome, Outcome::Diverged);
    let pointers: Vec<&str> = c.differences.iter().map(|d| d.pointer.as_str()).collect();
    assert_eq!(pointers, ["/k31337", "/k59999"]);
    assert_eq!(c.differences[1].shadow, None);
    let same = compare(
        &json_settings(),
        answer(&live),
        answer(&flat_object(60_000, true, None, None)),
    );
    assert_eq!(same.outcome, Outcome::Match);
}

#[test]
fn the_fast_path_leaves_objects_of_many_keys_to_the_full_comparison() {
    let with_meta = |keys| {
        format!(
            r#"{{"predictions": [0.5], "meta": {}}}"#,
            flat_object(keys, false, None, None)
        )
    };
    let (small, large) = (with_meta(32), with_meta(33));
    let quick = |body: &str| {
        veer_compare::lockstep::quick_match(&json_settings(), body.as_bytes(), body.as_bytes())
    };
    assert!(quick(&small).is_some());
    assert!(quick(&large).is_none());
    let c = compare(
        &json_settings(),
        Answer {
            status: 200,
            body: large.as_bytes(),
        },
        Answer {
            status: 200,
            body: large.as_bytes(),
        },
    );
    assert_eq!(c.outcome, Outcome::Match);
}

//! Prediction comparison cost.
//!
//! Targets: a 1 KiB KServe V1 prediction pair judged in under 5 µs; a KServe V2 pair
//! and a large object judged in time linear in their size. Run with
//! `cargo bench --bench compare`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use veer_compare::{compare, Answer, Comparison, Outcome};
use veer_config::Compare;

/// A KServe V1 answer of ~1 KiB: 32 rows of 3 class probabilities plus metadata;
/// `nudge` shifts every probability a little, as a retrained model would.
fn kserve_v1(nudge: f64) -> String {
    let rows: Vec<String> = (0..32)
        .map(|i| {
            let p = (f64::from(i) * 0.37).fract() * 0.5;
            format!("[{:.6},{:.6},{:.6}]", p + nudge, 0.25 - nudge, 0.75 - p)
        })
        .collect();
    format!(
        r#"{{"predictions":[{}],"model_version":"churn-v2","latency_ms":12}}"#,
        rows.join(",")
    )
}

/// Compares two 200 answers, hiding the bodies from the optimiser.
fn judge_ok(settings: &Compare, live: &str, shadow: &str) -> Comparison {
    compare(
        settings,
        Answer {
            status: 200,
            body: black_box(live.as_bytes()),
        },
        Answer {
            status: 200,
            body: black_box(shadow.as_bytes()),
        },
    )
}

fn judge(c: &mut Criterion) {
    let (live, shadow) = (kserve_v1(0.0), kserve_v1(0.0004));
    assert!((900..1300).contains(&live.len()), "{} bytes", live.len());
    let settings = Compare {
        abs_tolerance: 0.001,
        ignore: vec!["/model_version".into(), "/latency_ms".into()],
        ..Compare::default()
    };
    let mut group = c.benchmark_group("compare");
    group.bench_function("kserve v1 1 KiB pair, json mode", |b| {
        b.iter(|| judge_ok(&settings, &live, &shadow))
    });
    // Baseline in the same run (the machines are noisy): serde_json only parsing the
    // same pair into its Value, no comparison.
    group.bench_function("baseline: serde_json parse of the pair", |b| {
        b.iter(|| {
            let l: serde_json::Value = serde_json::from_slice(black_box(live.as_bytes())).ok()?;
            let s: serde_json::Value = serde_json::from_slice(black_box(shadow.as_bytes())).ok()?;
            Some((l, s))
        })
    });
    group.finish();
}

/// A flat object of `n` keys, shuffled on the shadow side so the fast path gives up
/// and every key is paired by the full comparison. The time per key must stay flat
/// as `n` grows (5k, 20k, 60k keys: a lookup per key made it 40 ms, 430 ms, 3 s).
fn flat_object(n: usize, reversed: bool) -> String {
    let mut keys: Vec<usize> = (0..n).collect();
    if reversed {
        keys.reverse();
    }
    let members: Vec<String> = keys.iter().map(|i| format!("\"k{i:05}\":0.5")).collect();
    format!("{{{}}}", members.join(","))
}

fn scaling(c: &mut Criterion) {
    let settings = Compare::default();
    let mut group = c.benchmark_group("flat object");
    group.sample_size(10);
    for n in [5_000, 20_000, 60_000] {
        let (live, shadow) = (flat_object(n, false), flat_object(n, true));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n} keys"), |b| {
            b.iter(|| judge_ok(&settings, &live, &shadow))
        });
    }
    group.finish();
}

/// A KServe V2 (Open Inference Protocol) answer of `rows` rows, as a classifier
/// returns it: an `[n, 3]` FP32 output of class probabilities beside a BYTES label
/// output; `nudge` shifts the probabilities a little (classes unchanged), as a
/// retrained model would.
fn kserve_v2(rows: usize, nudge: f64) -> String {
    let mut probabilities = Vec::with_capacity(rows * 3);
    let mut labels = Vec::with_capacity(rows);
    for i in 0..rows {
        let p = (i as f64 * 0.37).fract() * 0.5;
        // The two likely classes move together, so the argmax stays the label.
        let row = [p + nudge, 0.25 - 2.0 * nudge, 0.75 - p + nudge];
        probabilities.extend(row.map(|v| format!("{v:.6}")));
        labels.push(if p > 0.75 - p {
            r#""churn""#
        } else {
            r#""stay""#
        });
    }
    format!(
        concat!(
            r#"{{"model_name":"churn","model_version":"{}","id":"{}","outputs":["#,
            r#"{{"name":"probabilities","shape":[{},3],"datatype":"FP32","data":[{}]}},"#,
            r#"{{"name":"label","shape":[{}],"datatype":"BYTES","data":[{}]}}]}}"#
        ),
        if nudge == 0.0 { "1" } else { "2" },
        "9a3c6f0e-5d1b-4e8a-b2f7-0c4d8e6a1b35",
        rows,
        probabilities.join(","),
        rows,
        labels.join(","),
    )
}

/// KServe V2 pairs of about 1, 4, 16 and 64 KiB, judged with the settings of
/// `config/shadow-v2.toml`: the `outputs` selected (paired by name), within 0.001 or
/// 1 %. The shadow's probabilities moved within tolerance and its labels agree: the
/// usual, matching pair. Bytes per second (both answers) must stay flat across sizes.
fn kserve_v2_sizes(c: &mut Criterion) {
    let settings = Compare {
        select: vec!["/outputs".into()],
        abs_tolerance: 0.001,
        rel_tolerance: 0.01,
        ignore: vec!["/model_version".into(), "/id".into()],
        ..Compare::default()
    };
    // The envelope, and the bytes a row adds (about 37), measured rather than assumed.
    let envelope = kserve_v2(0, 0.0).len();
    let per_row = (kserve_v2(1000, 0.0).len() - envelope) / 1000;
    let mut group = c.benchmark_group("kserve v2 pair");
    for kib in [1, 4, 16, 64] {
        let rows = (kib * 1024 - envelope) / per_row;
        let (live, shadow) = (kserve_v2(rows, 0.0), kserve_v2(rows, 0.0004));
        let size = live.len();
        assert!(
            (kib * 1024 * 9 / 10..kib * 1024 * 11 / 10).contains(&size),
            "{kib} KiB: {size} bytes"
        );
        let verdict = judge_ok(&settings, &live, &shadow);
        assert_eq!(verdict.outcome, Outcome::Match, "{verdict:?}");
        assert_eq!(verdict.label_agreement, Some(true), "{verdict:?}");
        group.throughput(Throughput::Bytes((live.len() + shadow.len()) as u64));
        group.bench_function(format!("{kib} KiB, json mode"), |b| {
            b.iter(|| judge_ok(&settings, &live, &shadow))
        });
    }
    group.finish();
}

criterion_group!(benches, judge, kserve_v2_sizes, scaling);
criterion_main!(benches);

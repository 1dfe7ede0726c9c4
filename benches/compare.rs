//! Prediction comparison cost.
//!
//! Targets: a 1 KiB KServe V1 prediction pair judged in under 5 µs; a large object
//! judged in time linear in its size. Run with `cargo bench --bench compare`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use veer_compare::{compare, Answer, Comparison};
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

criterion_group!(benches, judge, scaling);
criterion_main!(benches);

//! Routing decision cost: match + split on a 10-route table.
//!
//! Target (issue 2): under 200 ns for match + sticky split. Run with
//! `cargo bench --bench route`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri};
use veer_config::Config;
use veer_route::{decide, RequestHead, Rule};

/// Ten routes on distinct model paths, each a sticky canary; the last one is the
/// catch-all a request falls through to after nine failed matches.
fn ten_routes() -> Vec<Rule> {
    let mut toml = String::from(
        "[backends.v1]\nurl = \"http://127.0.0.1:8001\"\n[backends.v2]\nurl = \"http://127.0.0.1:8002\"\n",
    );
    for i in 0..9 {
        toml.push_str(&format!(
            "[[routes]]\nname = \"model-{i}\"\nmatch = {{ path_prefix = \"/v1/models/model-{i}\", method = \"POST\" }}\n\
             split = [ {{ backend = \"v1\", weight = 95 }}, {{ backend = \"v2\", weight = 5 }} ]\n\
             split_by = {{ header = \"x-user-id\" }}\n",
        ));
    }
    toml.push_str(
        "[[routes]]\nname = \"churn\"\nmatch = { path_prefix = \"/v1/models/churn\" }\n\
         split = [ { backend = \"v1\", weight = 90 }, { backend = \"v2\", weight = 10 } ]\n\
         split_by = { header = \"x-user-id\" }\nhash_seed = 7\n",
    );
    let loaded = Config::from_toml("bench.toml", &toml).expect("bench config is valid");
    assert_eq!(loaded.config.routes.len(), 10);
    loaded.config.routes.iter().map(Rule::new).collect()
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("models.example.com"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("python-requests/2.32"),
    );
    h.insert("x-user-id", HeaderValue::from_static("customer-8412-eu"));
    h
}

fn decisions(c: &mut Criterion) {
    let table = ten_routes();
    let headers = headers();
    let mut rng = rand::rng();
    let last: Uri = "/v1/models/churn:predict".parse().expect("uri");
    let first: Uri = "/v1/models/model-0:predict".parse().expect("uri");

    let mut group = c.benchmark_group("decide");
    group.bench_function("10 routes, last matches, sticky header", |b| {
        let head = RequestHead {
            method: &Method::POST,
            uri: &last,
            headers: &headers,
        };
        b.iter(|| decide(&table, black_box(&head), &mut rng))
    });
    group.bench_function("10 routes, first matches, sticky header", |b| {
        let head = RequestHead {
            method: &Method::POST,
            uri: &first,
            headers: &headers,
        };
        b.iter(|| decide(&table, black_box(&head), &mut rng))
    });
    let empty = HeaderMap::new();
    group.bench_function("10 routes, last matches, no key (random)", |b| {
        let head = RequestHead {
            method: &Method::POST,
            uri: &last,
            headers: &empty,
        };
        b.iter(|| decide(&table, black_box(&head), &mut rng))
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);

//! Weighted and sticky splits, measured over thousands of real requests.

use std::collections::HashMap;

use veer_testkit::TestClient;

use crate::{start, two_versions};

/// How many of `users` land on each backend (one request per user, keyed by header).
async fn assign(
    client: &TestClient,
    users: impl Iterator<Item = String>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for user in users {
        let answer = client
            .get("/v1/predict", &[("x-user-id", &user)])
            .await
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.text());
        out.insert(user, answer.header("x-veer-backend").to_owned());
    }
    out
}

fn users(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

/// |observed - n·p| within 5 standard deviations of a binomial(n, p): a real
/// split passes essentially always, a wrong one (off by a few points) fails.
fn assert_binomial(observed: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (observed as f64 - mean).abs() <= 5.0 * sd,
        "{observed} of {n}, expected {mean:.0} ± {:.0}",
        5.0 * sd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_split_follows_the_weights() {
    let (a, b) = crate::two_backends().await;
    let veer = start(&two_versions(&a.url(), &b.url(), 80, 20, "\"random\""));
    let client = TestClient::new(veer.addr());
    let n = 2_000;
    let mut to_v2 = 0;
    for _ in 0..n {
        let answer = client.get("/v1/predict", &[]).await.expect("answer");
        assert_eq!(answer.status, 200);
        if answer.header("x-veer-backend") == "v2" {
            to_v2 += 1;
        }
    }
    assert_binomial(to_v2, n, 0.2);
    assert_eq!(a.requests() + b.requests(), n);
    assert_eq!(b.requests(), to_v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_split_keeps_each_user_on_one_version() {
    let (a, b) = crate::two_backends().await;
    let veer = start(&two_versions(
        &a.url(),
        &b.url(),
        80,
        20,
        "{ header = \"x-user-id\" }",
    ));
    let client = TestClient::new(veer.addr());

    let assigned = assign(&client, users(2_000)).await;
    let to_v2 = assigned.values().filter(|b| *b == "v2").count();
    assert_binomial(to_v2, 2_000, 0.2);

    for user in ["user-1", "user-2", "user-3"] {
        let first = &assigned[user];
        for _ in 0..1_000 {
            let answer = client
                .get("/v1/predict", &[("x-user-id", user)])
                .await
                .expect("answer");
            assert_eq!(answer.header("x-veer-backend"), first, "{user} moved");
        }
    }
}

/// Raising v2's weight moves users onto v2 and none off it; lowering it again puts
/// every user back where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_canary_weight_only_moves_users_onto_it() {
    let (a, b) = crate::two_backends().await;
    let by = "{ header = \"x-user-id\" }";
    let veer = start(&two_versions(&a.url(), &b.url(), 80, 20, by));
    let client = TestClient::new(veer.addr());
    let at_20 = assign(&client, users(1_000)).await;

    tokio::task::block_in_place(|| veer.reload(&two_versions(&a.url(), &b.url(), 50, 50, by)))
        .expect("reload to 50/50");
    let at_50 = assign(&client, users(1_000)).await;
    let mut moved = 0;
    for (user, before) in &at_20 {
        let after = &at_50[user];
        if before != after {
            assert_eq!((before.as_str(), after.as_str()), ("v1", "v2"), "{user}");
            moved += 1;
        }
    }
    // 30 % of users should move: 300 ± 5 sd (≈ 72).
    assert_binomial(moved, 1_000, 0.3);

    tokio::task::block_in_place(|| veer.reload(&two_versions(&a.url(), &b.url(), 80, 20, by)))
        .expect("reload back to 80/20");
    assert_eq!(assign(&client, users(1_000)).await, at_20);
}

/// Two replicas with one config agree on every user: the hash is process-independent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_one_config_agree_on_every_user() {
    let (a, b) = crate::two_backends().await;
    let config = two_versions(&a.url(), &b.url(), 50, 50, "{ cookie = \"uid\" }");
    let (one, two) = (start(&config), start(&config));
    let (c1, c2) = (TestClient::new(one.addr()), TestClient::new(two.addr()));
    let mut split = HashMap::new();
    for i in 0..500 {
        let cookie = format!("theme=dark; uid=u{i}");
        let x = c1
            .get("/v1/p", &[("cookie", &cookie)])
            .await
            .expect("answer");
        let y = c2
            .get("/v1/p", &[("cookie", &cookie)])
            .await
            .expect("answer");
        assert_eq!(
            x.header("x-veer-backend"),
            y.header("x-veer-backend"),
            "uid=u{i}"
        );
        *split
            .entry(x.header("x-veer-backend").to_owned())
            .or_insert(0) += 1;
    }
    assert_binomial(split["v2"], 500, 0.5);
}

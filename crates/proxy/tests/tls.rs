//! TLS and HTTP/2 over real loopback sockets: the HTTPS listener (ALPN, rotation on
//! reload, a bad pair refused), `https://` backends (a private CA, mutual TLS), and
//! HTTP/2 to backends (`protocol = "h2"`).

mod common;

use std::process::Command;

use common::start;
use http::Version;
use veer_testkit::{Behavior, TestBackend, TestPki};

fn https_config(pki: &TestPki, backend: &str) -> String {
    format!(
        r#"
[listen]
https = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"

[backends.model]
url = "{backend}"
timeout = "5s"

[[routes]]
name = "all"
split = [ {{ backend = "model", weight = 1 }} ]
"#,
        cert = pki.path("server.crt").display(),
        key = pki.path("server.key").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_listener_speaks_h2_and_http1_and_rotates_its_certificate_on_reload() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let pki = TestPki::new();
    let config = https_config(&pki, &backend.url());
    let proxy = start(&config).await;
    let https = proxy.https.expect("an https listener");

    let (alpn, served) = pki
        .handshake(https, &[b"h2", b"http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()));
    assert_eq!(served, pki.certificate("server"));
    let (alpn, _) = pki
        .handshake(https, &[b"http/1.1"])
        .await
        .expect("handshake");
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    for (h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let (answer, got) = pki
            .client(https, h2)
            .get("/v1/x", &[])
            .await
            .expect("answer");
        assert_eq!(
            (answer.status.as_u16(), answer.text()),
            (200, "ok".to_owned())
        );
        assert_eq!(got, version);
    }

    // A rotated pair is served from the next handshake on.
    pki.issue("server", "second");
    proxy.reload(&config).await.expect("the rotated pair loads");
    let (_, served) = pki.handshake(https, &[b"h2"]).await.expect("handshake");
    assert_eq!(served, pki.certificate("server"), "the new certificate");
    let rotated = served;

    // A broken pair is refused; the running one keeps serving.
    let errors_before = proxy.metric("veer_config_reloads_total", &[("result", "error")]);
    std::fs::write(pki.path("server.key"), "not a key").expect("break the key");
    let refused = proxy
        .reload(&config)
        .await
        .expect_err("a broken key is refused");
    assert!(refused.to_string().contains("tls.key"), "{refused}");
    assert_eq!(proxy.routes.load().generation(), 2);
    assert_eq!(
        proxy.metric("veer_config_reloads_total", &[("result", "error")]),
        errors_before + 1.0
    );
    let (_, served) = pki.handshake(https, &[b"h2"]).await.expect("still serving");
    assert_eq!(served, rotated);
    for _ in 0..20 {
        let (answer, _) = pki
            .client(https, true)
            .get("/v1/x", &[])
            .await
            .expect("answer");
        assert_eq!(answer.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused() {
    let backend = TestBackend::start(Behavior::Fixed("ok".into())).await;
    let pki = TestPki::new();
    let proxy = start(&https_config(&pki, &backend.url())).await;
    let https = proxy.https.expect("an https listener");
    let connect = format!("127.0.0.1:{}", https.port());
    let run = |version: &str| {
        Command::new("openssl")
            // SECLEVEL=0 lets OpenSSL 3 offer TLS 1.1 at all, so the refusal is veer's.
            .args([
                "s_client",
                version,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-connect",
                &connect,
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
    };
    let old = match tokio::task::block_in_place(|| run("-tls1_1")) {
        Ok(out) => out,
        Err(e) => {
            veer_testkit::skipped(&format!(
                "tls_1_1_is_refused: openssl is not installed ({e})"
            ));
            return;
        }
    };
    let said =
        String::from_utf8_lossy(&old.stderr).into_owned() + &String::from_utf8_lossy(&old.stdout);
    assert!(
        !old.status.success(),
        "a TLS 1.1 handshake must fail: {said}"
    );
    // rustls answers a TLS 1.1 ClientHello with an alert (handshake failure).
    assert!(
        said.contains("CONNECTED") && said.contains("alert handshake failure"),
        "refused by the server: {said}"
    );
    let current = tokio::task::block_in_place(|| run("-tls1_2")).expect("openssl");
    let text = String::from_utf8_lossy(&current.stdout);
    assert!(
        text.contains("Protocol  : TLSv1.2") || text.contains("TLSv1.2"),
        "{text}"
    );
}

fn backend_config(url: &str, extra: &str) -> String {
    format!(
        r#"
[backends.model]
url = "{url}"
timeout = "5s"
{extra}

[[routes]]
name = "all"
split = [ {{ backend = "model", weight = 1 }} ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_backends_are_trusted_by_their_ca_and_can_ask_for_a_client_certificate() {
    let pki = TestPki::new();
    let ca = format!("ca = \"{}\"", pki.path("ca.pem").display());
    let server = TestBackend::start_tls(Behavior::Inspect, pki.server_config(false)).await;

    let trusted = start(&backend_config(&server.https_url(), &ca)).await;
    let answer = trusted.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["version"], "HTTP/1.1");

    // The webpki roots do not know the test CA: the backend is not trusted.
    let untrusted = start(&backend_config(&server.https_url(), "")).await;
    let answer = untrusted.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 502);
    assert_eq!(answer.json()["error"], "backend_unreachable");

    let mutual =
        TestBackend::start_tls(Behavior::Fixed("mtls".into()), pki.server_config(true)).await;
    let with_cert = format!(
        "{ca}\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        pki.path("client.crt").display(),
        pki.path("client.key").display()
    );
    let presenting = start(&backend_config(&mutual.https_url(), &with_cert)).await;
    let answer = presenting.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(
        (answer.status.as_u16(), answer.text()),
        (200, "mtls".to_owned())
    );
    let anonymous = start(&backend_config(&mutual.https_url(), &ca)).await;
    let answer = anonymous.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 502, "no client certificate, no answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_backends_get_http2_in_clear_and_over_tls() {
    let plain = TestBackend::start(Behavior::Inspect).await;
    let proxy = start(&backend_config(&plain.url(), "protocol = \"h2\"")).await;
    let answer = proxy
        .client
        .get("/v1/x", &[("te", "trailers")])
        .await
        .expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.json()["version"],
        "HTTP/2.0",
        "h2c by prior knowledge"
    );

    let pki = TestPki::new();
    let tls = TestBackend::start_tls(Behavior::Inspect, pki.server_config(false)).await;
    let extra = format!(
        "protocol = \"h2\"\nca = \"{}\"",
        pki.path("ca.pem").display()
    );
    let proxy = start(&backend_config(&tls.https_url(), &extra)).await;
    let answer = proxy.client.get("/v1/x", &[]).await.expect("answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["version"], "HTTP/2.0", "h2 by ALPN");
}

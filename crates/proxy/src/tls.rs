//! TLS with rustls: the HTTPS listener's certificate, and the trust (and client
//! certificate) veer uses towards `https://` backends.
//!
//! Everything is read from PEM files (rustls-pki-types' `PemObject`) when a
//! generation is compiled, so a reload re-reads them: a rotated pair is served from
//! the next handshake on, and a pair that cannot be used refuses the reload while the
//! running one keeps serving. The crypto provider is *ring*: it builds with a C
//! compiler alone (aws-lc-rs also wants cmake or prebuilt objects), and veer needs
//! nothing it lacks. TLS 1.2 and 1.3 only; rustls has never spoken older versions.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use veer_config::{BackendTls, Tls};

use crate::snapshot::UnusableFile;

/// ALPN protocols offered to clients, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The HTTPS listener's configuration: the certificate chain and key in `tls`, ALPN
/// h2 and http/1.1, TLS 1.2 and 1.3.
pub(crate) fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, UnusableFile> {
    let certs = certificates("tls.cert", &tls.cert, &read_pem("tls.cert", &tls.cert)?)?;
    let key = private_key("tls.key", &tls.key, &read_pem("tls.key", &tls.key)?)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| UnusableFile::new("tls.cert", &tls.cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            UnusableFile::new(
                "tls.key",
                &tls.key,
                format!("it does not go with tls.cert: {e}"),
            )
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The PEM files an `https://` backend's settings name, as read for one generation:
/// part of what keys its upstream client, so a rotated file makes a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsFiles {
    ca: Option<Vec<u8>>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Reads the files `tls` names.
    pub(crate) fn read(tls: &BackendTls) -> Result<TlsFiles, UnusableFile> {
        let read =
            |what, path: &Path| std::fs::read(path).map_err(|e| UnusableFile::new(what, path, e));
        Ok(TlsFiles {
            ca: tls.ca.as_deref().map(|ca| read("ca", ca)).transpose()?,
            client_cert: match &tls.client_cert {
                Some((cert, key)) => Some((read("client_cert", cert)?, read("client_key", key)?)),
                None => None,
            },
        })
    }
}

/// What veer trusts and presents towards `https://` backends: the webpki roots, or
/// the `ca` file's; and the client certificate for mutual TLS, when set. `files`
/// are the bytes of the files `tls` names. ALPN is left to the connector, which
/// offers what the backend's `protocol` speaks.
pub(crate) fn client_config(
    tls: &BackendTls,
    files: &TlsFiles,
) -> Result<ClientConfig, UnusableFile> {
    let mut roots = RootCertStore::empty();
    match (&tls.ca, &files.ca) {
        (Some(ca), Some(pem)) => {
            for cert in certificates("ca", ca, pem)? {
                roots
                    .add(cert)
                    .map_err(|e| UnusableFile::new("ca", ca, e))?;
            }
        }
        _ => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let versions = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS);
    // The versions are rustls's own defaults: the provider always supports them.
    let builder = versions
        .map_err(|e| UnusableFile::new("ca", tls.ca.as_deref().unwrap_or(Path::new("-")), e))?
        .with_root_certificates(roots);
    match (&tls.client_cert, &files.client_cert) {
        (Some((cert, key)), Some((cert_pem, key_pem))) => builder
            .with_client_auth_cert(
                certificates("client_cert", cert, cert_pem)?,
                private_key("client_key", key, key_pem)?,
            )
            .map_err(|e| {
                UnusableFile::new(
                    "client_key",
                    key,
                    format!("it does not go with client_cert: {e}"),
                )
            }),
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Every certificate in the PEM text `pem` (read from `path`); at least one.
fn certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, UnusableFile> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UnusableFile::new(what, path, e))?;
    if certs.is_empty() {
        return Err(UnusableFile::new(what, path, "it holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key in the PEM text `pem` (read from `path`): PKCS#8, PKCS#1 or SEC1.
fn private_key(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<PrivateKeyDer<'static>, UnusableFile> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| UnusableFile::new(what, path, e))
}

/// Reads a PEM file named by the setting `what`.
fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, UnusableFile> {
    std::fs::read(path).map_err(|e| UnusableFile::new(what, path, e))
}

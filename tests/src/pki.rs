//! Throw-away certificates for TLS tests: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, a client certificate signed by the same CA, and a client certificate signed by
//! another CA (which servers must refuse), written as PEM files into a directory; and
//! [`tls12_channel`], a client restricted to TLS 1.2 for tests of what a server refuses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from another CA.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("self-signed CA").pem();
    (params, key, pem)
}

fn leaf(
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("leaf parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

impl TestPki {
    /// Generates everything into `dir` (created if missing).
    pub fn generate(dir: &Path) -> TestPki {
        std::fs::create_dir_all(dir).expect("PKI directory");
        let (ca_params, ca_key, ca_pem) = ca("test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let (server_cert, server_key) = leaf(
            "test server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client_cert, client_key) = leaf(
            "test client",
            &["client.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );
        let (other_params, other_key, _) = ca("another CA");
        let other = Issuer::new(other_params, other_key);
        let (stranger_cert, stranger_key) = leaf(
            "stranger",
            &["stranger.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other,
        );
        TestPki {
            ca: write(dir, "ca.crt", &ca_pem),
            server_cert: write(dir, "server.crt", &server_cert),
            server_key: write(dir, "server.key", &server_key),
            client_cert: write(dir, "client.crt", &client_cert),
            client_key: write(dir, "client.key", &client_key),
            stranger_cert: write(dir, "stranger.crt", &stranger_cert),
            stranger_key: write(dir, "stranger.key", &stranger_key),
        }
    }
}

/// A lazily connecting channel to the `https://` `url` like `telemetry::tls::channel` makes with
/// `files`, but speaking TLS 1.2 only (connect timeout 5 s, calls 10 s).
///
/// With TLS 1.3 (what our clients offer) a client's handshake is complete before the server has
/// checked the client's certificate: a refusal reaches the client as a connection error racing
/// with its first request, so the status of the call varies (UNKNOWN, CANCELLED, a broken pipe…).
/// With TLS 1.2 the server checks the certificate before it finishes the handshake: a refused
/// client's call fails with UNAVAILABLE and the server's alert (`CertificateRequired`,
/// `UnknownCA`, …) in its message.
pub fn tls12_channel(
    url: &str,
    files: &telemetry::tls::ClientTlsFiles,
) -> tonic::transport::Channel {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = files
        .ca
        .as_deref()
        .expect("a TLS 1.2 test client needs a CA");
    for certificate in telemetry::tls::read_certificates(ca, "CA certificate").expect("the CA") {
        roots.add(certificate).expect("a usable CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2 with ring")
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                telemetry::tls::read_certificates(cert, "client certificate")
                    .expect("the client certificate"),
                telemetry::tls::read_private_key(key, "client key").expect("the client key"),
            )
            .expect("a usable client certificate and key"),
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(telemetry::tls::TlsConnector::new(Arc::new(config)))
}

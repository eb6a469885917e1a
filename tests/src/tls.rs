//! A private certificate authority and a `redis-server` that speaks TLS with its certificate.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::RedisServer;

/// A `redis-server` with a TLS port (beside its plain one, which the test support uses to see
/// that it is up), whose certificate for `127.0.0.1` is signed by a CA of the test's own.
pub struct TlsRedis {
    /// The server.
    pub server: RedisServer,
    /// The port that speaks TLS.
    pub tls_port: u16,
    /// The CA certificate, PEM-encoded: what a client must trust.
    pub ca_pem: String,
    _files: TempDir,
}

impl TlsRedis {
    /// Makes a CA and a server certificate, and starts the server with them.
    pub fn start() -> Self {
        let files = tempfile::tempdir().expect("a temporary folder");
        let (ca_pem, cert_pem, key_pem) = certificates();
        let path = |name: &str| files.path().join(name);
        write(&path("ca.crt"), &ca_pem);
        write(&path("server.crt"), &cert_pem);
        write(&path("server.key"), &key_pem);
        let arg = |name: &str| path(name).to_str().expect("a UTF-8 path").to_owned();
        // Another process can take the TLS port between our probe and redis binding it: retry.
        let mut failure = None;
        for _ in 0..5 {
            let tls_port = local_redis::free_port().expect("a free port");
            match RedisServer::try_start_with(&[
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &arg("server.crt"),
                "--tls-key-file",
                &arg("server.key"),
                "--tls-ca-cert-file",
                &arg("ca.crt"),
                "--tls-auth-clients",
                "no",
            ]) {
                Ok(server) => {
                    return Self {
                        server,
                        tls_port,
                        ca_pem,
                        _files: files,
                    };
                }
                Err(err) => failure = Some(err),
            }
        }
        panic!(
            "redis-server with TLS did not start: {}",
            failure.expect("five attempts")
        );
    }

    /// `rediss://127.0.0.1:{tls_port}`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }
}

/// A CA certificate, and a server certificate for `127.0.0.1` it signed with the server's key.
fn certificates() -> (String, String, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "session-store test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("a CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);

    // rustls checks the subject alternative name, never the common name.
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("parameters");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate().expect("a server key");
    let cert_pem = server
        .signed_by(&server_key, &issuer)
        .expect("a server certificate")
        .pem();
    (ca_pem, cert_pem, server_key.serialize_pem())
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|err| panic!("writing {path:?}: {err}"));
}

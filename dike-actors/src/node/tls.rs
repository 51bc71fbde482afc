//! Mutual TLS for cluster sessions: between nodes, and between clients and
//! nodes.
//!
//! Invariant: a process configured with [`Tls`] opens and accepts only TLS
//! sessions in which both ends presented a certificate that chains to the
//! configured CA (the listener requires a client certificate; the dialler
//! verifies the node's). The cookie is still checked inside the session.
//!
//! Server names: a node is dialled at the `HOST:PORT` it advertises (or the
//! one given to a client), and its certificate is verified against that
//! `HOST`: an IP address must be an IP address entry of the certificate's
//! subject alternative names, a host name a DNS entry. `dike certs issue
//! NAME` therefore writes NAME, every `--host` and, by default, `localhost`
//! and `127.0.0.1` into the certificate; a node reached at `10.0.0.1` needs
//! `--host 10.0.0.1`. The listener does not check names in client
//! certificates: being signed by the CA is what admits a client.
//!
//! Crypto: rustls on aws-lc-rs, the provider ractor_cluster's rustls is
//! built with; configurations name it explicitly, so no process-wide
//! default provider is needed.

use ractor_cluster::IncomingEncryptionMode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{
    self, AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The three files of a TLS setup, all PEM: this process's certificate
/// (optionally followed by intermediates), its private key, and the CA
/// certificate(s) every peer's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// This process's certificate chain.
    pub cert: PathBuf,
    /// The private key of the certificate.
    pub key: PathBuf,
    /// The CA certificates trusted for peers.
    pub ca: PathBuf,
}

/// Why a [`TlsConfig`] could not be loaded: each names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {reason}", path.display())]
    Read {
        /// Which file it is ("certificate", "private key", "CA certificate").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What reading said.
        reason: String,
    },
    /// A file holds no PEM item of the kind expected.
    #[error("{what} {} holds no PEM {expected} ({reason})", path.display())]
    NotPem {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold ("CERTIFICATE", "PRIVATE KEY").
        expected: &'static str,
        /// What the PEM reader said.
        reason: String,
    },
    /// The private key is not the key of the certificate.
    #[error("private key {} does not belong to certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// The certificate cannot be used with this CA (expired, not signed by
    /// it, not for TLS clients and servers, ...).
    #[error("certificate {} {reason}", cert.display())]
    Certificate {
        /// The certificate.
        cert: PathBuf,
        /// Why, in words ("has expired", "is not signed by the CA in …").
        reason: String,
    },
    /// A file was read but rustls refused what it holds.
    #[error("{what} {}: {reason}", path.display())]
    Unusable {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// A loaded TLS setup: the listener's acceptor and the dialler's connector.
/// Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    files: TlsConfig,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let not_pem = |reason: String| TlsError::NotPem {
        what,
        path: path.to_owned(),
        expected: "CERTIFICATE",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(not_pem("no BEGIN CERTIFICATE section".into()));
    }
    Ok(certs)
}

impl TlsConfig {
    /// Reads the three files and checks them together: the key belongs to
    /// the certificate, and the certificate chains to the CA and is valid
    /// now (a certificate that every peer would refuse is refused here,
    /// with a message naming the file).
    pub fn load(&self) -> Result<Tls, TlsError> {
        let ca = certificates("CA certificate", &self.ca)?;
        let chain = certificates("certificate", &self.cert)?;
        let key_bytes = read("private key", &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::NotPem {
            what: "private key",
            path: self.key.clone(),
            expected: "PRIVATE KEY",
            reason: e.to_string(),
        })?;
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(|e| TlsError::Unusable {
                what: "CA certificate",
                path: self.ca.clone(),
                reason: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Unusable {
                what: "CA certificate",
                path: self.ca.clone(),
                reason: e.to_string(),
            })?;
        // The certificate serves both ways: check it as peers will.
        let now = UnixTime::now();
        verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .map_err(|e| self.certificate_error(&e))?;
        let unusable = |what: &'static str, path: &Path, e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            other => TlsError::Unusable {
                what,
                path: path.to_owned(),
                reason: other.to_string(),
            },
        };
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("certificate", &self.cert, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| unusable("private key", &self.key, e))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("certificate", &self.cert, e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| unusable("private key", &self.key, e))?;
        Ok(Tls {
            files: self.clone(),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    fn certificate_error(&self, e: &rustls::Error) -> TlsError {
        let reason = match e {
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "has expired; issue a new one (dike certs issue)".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "is not valid yet (is this machine's clock right?)".to_owned()
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "is not signed by the CA in {}; issue it with that CA, or give the CA that \
                     signed it",
                    self.ca.display()
                ),
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => {
                    "is not for both TLS clients and servers (extended key usage); issue one \
                     with dike certs issue"
                        .to_owned()
                }
                other => format!("is not usable: {other:?}"),
            },
            other => format!("is not usable: {other}"),
        };
        TlsError::Certificate {
            cert: self.cert.clone(),
            reason,
        }
    }
}

/// Why a TLS handshake with a node failed, as the dialler sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    /// The node's certificate does not chain to this process's CA.
    #[error("the node's certificate is not signed by your CA (--tls-ca)")]
    UnknownIssuer,
    /// The node's certificate has expired.
    #[error("the node's certificate has expired; it needs a new one (dike certs issue)")]
    PeerExpired,
    /// The node's certificate does not name the host it was dialled at.
    #[error(
        "the node's certificate is not valid for {host}: it must name the host it is reached \
         at (dike certs issue NAME --host {host})"
    )]
    WrongName {
        /// The host dialled.
        host: String,
    },
    /// The node refused this process's certificate as expired.
    #[error("the node refused your certificate: it has expired (--tls-cert)")]
    OwnExpired,
    /// The node refused this process's certificate (not signed by its CA).
    #[error("the node refused your certificate: it is not signed by the node's CA (--tls-cert, --tls-ca)")]
    OwnRefused,
    /// The node closed the connection during the handshake: most likely it
    /// runs without TLS.
    #[error(
        "the node closed the connection during the TLS handshake; does it run without TLS? \
         (a node without --tls-* flags takes only clients without them)"
    )]
    Closed,
    /// Anything else rustls said.
    #[error("{0}")]
    Other(String),
}

impl TlsFailure {
    /// What an I/O error of a TLS connection means.
    fn of(e: &std::io::Error, host: &str) -> TlsFailure {
        let tls = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    TlsFailure::UnknownIssuer
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsFailure::PeerExpired
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => TlsFailure::WrongName {
                    host: host.to_owned(),
                },
                other => {
                    TlsFailure::Other(format!("the node's certificate is not usable: {other:?}"))
                }
            },
            Some(rustls::Error::AlertReceived(alert)) => match alert {
                AlertDescription::CertificateExpired => TlsFailure::OwnExpired,
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::DecryptError
                | AlertDescription::CertificateUnknown => TlsFailure::OwnRefused,
                other => TlsFailure::Other(format!("the node ended the handshake ({other:?})")),
            },
            Some(other) => TlsFailure::Other(other.to_string()),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                TlsFailure::Closed
            }
            None => TlsFailure::Other(e.to_string()),
        }
    }
}

/// The host part of `HOST:PORT` (`[v6]:PORT` too), as a TLS server name.
fn server_name(address: &str) -> Result<(String, ServerName<'static>), TlsFailure> {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(host.clone())
        .map_err(|e| TlsFailure::Other(format!("{host:?} is not a TLS server name: {e}")))?;
    Ok((host, name))
}

impl Tls {
    /// The files it was loaded from.
    pub fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// The node server's listener setting.
    pub(crate) fn incoming(&self) -> IncomingEncryptionMode {
        IncomingEncryptionMode::Tls(self.acceptor.clone())
    }

    /// The client side of the handshake on `stream`, dialled at `address`
    /// (whose host the node's certificate must name).
    pub(crate) async fn connect(
        &self,
        address: &str,
        stream: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsFailure> {
        let (host, name) = server_name(address)?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|e| TlsFailure::of(&e, &host))
    }
}

/// Why a node closed a fresh cluster session before authentication, when
/// TLS is the reason rather than the cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClosedForTls {
    /// The node speaks TLS and this process does not.
    Required,
    /// The node refused this process's certificate.
    Refused(TlsFailure),
}

/// Finds out, with a connection of its own, whether the node at `address`
/// closed a session because of TLS: without `tls`, whether it speaks TLS
/// at all; with it, whether it refuses this process's certificate (with
/// TLS 1.3 the client's side of the handshake completes before the node
/// has checked the client's certificate, so a refusal only shows on the
/// first read). `None`: TLS is not the reason (the cookie is).
pub(crate) async fn closed_for_tls(
    address: &str,
    tls: Option<&Tls>,
    within: Duration,
) -> Option<ClosedForTls> {
    let attempt = async {
        let stream = TcpStream::connect(address).await.ok()?;
        match tls {
            None => speaks_tls(address, stream)
                .await
                .then_some(ClosedForTls::Required),
            Some(tls) => {
                let (host, _) = server_name(address).ok()?;
                let mut stream = match tls.connect(address, stream).await {
                    Ok(s) => s,
                    Err(f) => return Some(ClosedForTls::Refused(f)),
                };
                // A node that accepted the certificate waits for the
                // session's first message and sends nothing.
                let mut byte = [0u8; 1];
                match tokio::time::timeout(within, stream.read(&mut byte)).await {
                    Ok(Err(e)) => match TlsFailure::of(&e, &host) {
                        f @ (TlsFailure::OwnExpired | TlsFailure::OwnRefused) => {
                            Some(ClosedForTls::Refused(f))
                        }
                        _ => None,
                    },
                    _ => None,
                }
            }
        }
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()
}

/// Whether the peer of `stream` answers a TLS client hello as a TLS server
/// (with its certificate, which an empty trust store then refuses).
async fn speaks_tls(address: &str, stream: TcpStream) -> bool {
    let Ok((_, name)) = server_name(address) else {
        return false;
    };
    let Ok(config) = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        })
    else {
        return false;
    };
    let connector = TlsConnector::from(Arc::new(config));
    match connector.connect(name, stream).await {
        Ok(_) => true,
        Err(e) => matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::AlertReceived(_))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use tokio::net::TcpListener;

    /// A CA: its certificate (PEM) and its issuer.
    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes NAME.pem, NAME-key.pem and NAME-ca.pem for a certificate of
    /// `ca` for `names`, `expired` or not.
    fn files(dir: &Path, name: &str, ca: &Ca, names: &[&str], expired: bool) -> TlsConfig {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &ca.issuer).expect("cert");
        let f = TlsConfig {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca: dir.join(format!("{name}-ca.pem")),
        };
        std::fs::write(&f.cert, cert.pem()).expect("write");
        std::fs::write(&f.key, key.serialize_pem()).expect("write");
        std::fs::write(&f.ca, &ca.pem).expect("write");
        f
    }

    /// A TLS acceptor for `files` without [`TlsConfig::load`]'s checks,
    /// so a node with an expired certificate can be played.
    fn acceptor_unchecked(f: &TlsConfig) -> TlsAcceptor {
        let chain = CertificateDer::pem_file_iter(&f.cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(&f.key).expect("key");
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&f.ca).expect("ca") {
            roots.add(c.expect("ca")).expect("ca");
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("verifier");
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("config");
        TlsAcceptor::from(Arc::new(config))
    }

    /// Serves TLS handshakes with `acceptor` on a loopback port, holding
    /// each accepted connection open; returns the address.
    async fn tls_server(acceptor: TlsAcceptor) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = acceptor.accept(stream).await {
                        let mut buf = [0u8; 64];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    }
                });
            }
        });
        address
    }

    /// A plain server that reads a little and closes, as a node without
    /// TLS does with a TLS client hello (its length prefix is too large).
    async fn plain_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 8];
                let _ = stream.read(&mut buf).await;
            }
        });
        address
    }

    async fn handshake(tls: &Tls, address: &str) -> Result<(), TlsFailure> {
        let stream = TcpStream::connect(address).await.expect("connect");
        tls.connect(address, stream).await.map(|_| ())
    }

    #[test]
    fn missing_unreadable_and_mismatched_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let good = files(dir.path(), "a", &ca, &["localhost"], false);
        good.load().expect("a good setup loads");

        let missing = TlsConfig {
            ca: dir.path().join("nope.pem"),
            ..good.clone()
        };
        let err = missing.load().expect_err("missing").to_string();
        assert!(
            err.contains("nope.pem") && err.contains("CA certificate"),
            "{err}"
        );

        std::fs::write(dir.path().join("junk"), "not pem at all").expect("write");
        let junk = TlsConfig {
            cert: dir.path().join("junk"),
            ..good.clone()
        };
        let err = junk.load().expect_err("not PEM").to_string();
        assert!(
            err.contains("junk") && err.contains("no PEM CERTIFICATE"),
            "{err}"
        );
        let junk_key = TlsConfig {
            key: dir.path().join("junk"),
            ..good.clone()
        };
        let err = junk_key.load().expect_err("not PEM").to_string();
        assert!(err.contains("junk") && err.contains("PRIVATE KEY"), "{err}");

        let other = files(dir.path(), "b", &ca, &["localhost"], false);
        let mismatched = TlsConfig {
            key: other.key.clone(),
            ..good.clone()
        };
        let err = mismatched.load().expect_err("mismatch").to_string();
        assert!(err.contains("does not belong to certificate"), "{err}");

        let foreign = files(dir.path(), "c", &self::ca(), &["localhost"], false);
        let err = TlsConfig {
            ca: good.ca.clone(),
            ..foreign
        }
        .load()
        .expect_err("another CA")
        .to_string();
        assert!(
            err.contains("c.pem") && err.contains("is not signed by the CA"),
            "{err}"
        );

        let old = files(dir.path(), "d", &ca, &["localhost"], true);
        let err = old.load().expect_err("expired").to_string();
        assert!(
            err.contains("d.pem") && err.contains("has expired"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_handshake_says_why_it_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let node = files(dir.path(), "node", &ca, &["localhost", "127.0.0.1"], false);
        let client = files(dir.path(), "client", &ca, &["client"], false)
            .load()
            .expect("client");
        let at = tls_server(node.load().expect("node").acceptor.clone()).await;
        handshake(&client, &at).await.expect("same CA: accepted");

        let stranger = files(dir.path(), "stranger", &self::ca(), &["x"], false)
            .load()
            .expect("stranger");
        assert_eq!(
            handshake(&stranger, &at).await,
            Err(TlsFailure::UnknownIssuer)
        );

        let port = at.rsplit_once(':').expect("port").1;
        let by_name = format!("localhost:{port}");
        handshake(&client, &by_name)
            .await
            .expect("localhost is named");
        let elsewhere = files(dir.path(), "far", &ca, &["10.9.9.9"], false);
        let far = tls_server(elsewhere.load().expect("far").acceptor.clone()).await;
        assert_eq!(
            handshake(&client, &far).await,
            Err(TlsFailure::WrongName {
                host: "127.0.0.1".into()
            })
        );

        let old = files(dir.path(), "old", &ca, &["127.0.0.1"], true);
        let expired = tls_server(acceptor_unchecked(&old)).await;
        assert_eq!(
            handshake(&client, &expired).await,
            Err(TlsFailure::PeerExpired)
        );

        let plain = plain_server().await;
        assert_eq!(handshake(&client, &plain).await, Err(TlsFailure::Closed));
    }

    #[tokio::test]
    async fn a_closed_session_is_put_down_to_tls_only_when_tls_is_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca();
        let node = files(dir.path(), "node", &ca, &["127.0.0.1"], false);
        let at = tls_server(node.load().expect("node").acceptor.clone()).await;
        let within = Duration::from_millis(500);
        assert_eq!(
            closed_for_tls(&at, None, within).await,
            Some(ClosedForTls::Required)
        );
        let plain = plain_server().await;
        assert_eq!(closed_for_tls(&plain, None, within).await, None);
        // Accepted: the cookie, not TLS, closed the session.
        let client = files(dir.path(), "client", &ca, &["client"], false)
            .load()
            .expect("client");
        assert_eq!(closed_for_tls(&at, Some(&client), within).await, None);
        // A client certificate of another CA trusted by itself and the
        // node's CA: the node refuses it after the client's handshake.
        let other = self::ca();
        let mut both = files(dir.path(), "both", &other, &["both"], false);
        let bundle = format!("{}{}", ca.pem, other.pem);
        both.ca = dir.path().join("bundle.pem");
        std::fs::write(&both.ca, bundle).expect("write");
        let both = both.load().expect("both");
        assert_eq!(
            closed_for_tls(&at, Some(&both), within).await,
            Some(ClosedForTls::Refused(TlsFailure::OwnRefused))
        );
    }
}

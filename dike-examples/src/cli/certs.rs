//! `dike certs`: a private CA and the certificates it issues to nodes and
//! clients, for mutual TLS (`--tls-cert`, `--tls-key`, `--tls-ca`; see
//! `dike_actors::node::tls`).
//!
//! Invariants: a key file is created with mode 0600 and never overwritten
//! (nor is a CA certificate: replacing it would cut the cluster off); an
//! issued certificate that is meant to be valid is checked with the same
//! loader a node uses before the command succeeds. Keys are ECDSA P-256,
//! made with rcgen on aws-lc-rs, the crypto rustls uses here.

use super::args::CertsOp;
use super::error::CliError;
use dike_actors::node::tls::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA certificate in a CA directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key in a CA directory.
pub const CA_KEY: &str = "ca-key.pem";
/// How long a CA is valid.
const CA_DAYS: i64 = 3650;
/// The names every certificate carries unless told otherwise, so a
/// cluster on one machine works as it is.
const LOCAL_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

/// Runs a `dike certs` command; returns what to print.
pub fn run(op: &CertsOp) -> Result<String, CliError> {
    match op {
        CertsOp::CreateCa { out } => create_ca(out),
        CertsOp::Issue {
            name,
            ca_dir,
            hosts,
            no_local_hosts,
            days,
            out,
        } => {
            let mut names = vec![name.clone()];
            names.extend(hosts.iter().cloned());
            if !no_local_hosts {
                names.extend(LOCAL_HOSTS.iter().map(|h| h.to_string()));
            }
            issue(name, ca_dir, &names, *days, out)
        }
    }
}

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::Certs(what.to_string())
}

/// Creates `out` (and its parents) if missing.
fn make_dir(out: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(out)
        .map_err(|e| failed(format!("cannot create directory {}: {e}", out.display())))
}

/// Writes a new file (never over an existing one) with `mode`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => failed(format!(
                "{} exists already; remove it or write to another --out",
                path.display()
            )),
            _ => failed(format!("cannot create {}: {e}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

/// Refuses to start writing when any of `paths` exists: a half-written
/// pair of certificate and key is worse than none.
fn none_exists(paths: &[&Path]) -> Result<(), CliError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(failed(format!(
            "{} exists already; remove it or write to another --out",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// `dike certs create-ca --out DIR`.
pub fn create_ca(out: &Path) -> Result<String, CliError> {
    let (cert_path, key_path) = (out.join(CA_CERT), out.join(CA_KEY));
    none_exists(&[&cert_path, &key_path])?;
    let now = OffsetDateTime::now_utc();
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // A CA of its own name per cluster: two clusters' CAs never look alike.
    dn.push(
        DnType::CommonName,
        format!("dike-rs CA {}", now.unix_timestamp()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_DAYS);
    let cert = params.self_signed(&key).map_err(failed)?;
    make_dir(out)?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(format!(
        "CA certificate {} (give it to every node and client as --tls-ca)\n\
         CA key         {} (keep it private; only `dike certs issue` needs it)\n",
        cert_path.display(),
        key_path.display()
    ))
}

/// `dike certs issue NAME`: a certificate with `names` as its subject
/// alternative names, valid `days` days (0: already expired).
pub fn issue(
    name: &str,
    ca_dir: &Path,
    names: &[String],
    days: u32,
    out: &Path,
) -> Result<String, CliError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CliError::Usage(format!(
            "certificate name {name:?} cannot name a file; use a node's name such as n1"
        )));
    }
    let (ca_path, ca_key_path) = (ca_dir.join(CA_CERT), ca_dir.join(CA_KEY));
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            failed(format!(
                "cannot read {}: {e} (make a CA with dike certs create-ca --out {})",
                p.display(),
                ca_dir.display()
            ))
        })
    };
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?).map_err(|e| {
        failed(format!(
            "{} is not a PEM private key: {e}",
            ca_key_path.display()
        ))
    })?;
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_path)?, ca_key).map_err(|e| {
        failed(format!(
            "{} is not a PEM CA certificate: {e}",
            ca_path.display()
        ))
    })?;
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !unique.contains(n) {
            unique.push(n.clone());
        }
    }
    let mut params = CertificateParams::new(unique.clone()).map_err(|e| {
        CliError::Usage(format!("not a host name or IP address in {unique:?}: {e}"))
    })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    if days == 0 {
        params.not_before = now - Duration::days(2);
        params.not_after = now - Duration::days(1);
    } else {
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(i64::from(days));
    }
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, &issuer).map_err(failed)?;
    let (cert_path, key_path) = paths(out, name);
    none_exists(&[&cert_path, &key_path])?;
    make_dir(out)?;
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, &cert.pem(), 0o644)?;
    if days > 0 {
        // What a node will check, checked now: a CA key that does not
        // belong to the CA certificate signs certificates nobody accepts.
        let check = TlsConfig {
            cert: cert_path.clone(),
            key: key_path.clone(),
            ca: ca_path,
        };
        if let Err(e) = check.load() {
            let _ = std::fs::remove_file(&cert_path);
            let _ = std::fs::remove_file(&key_path);
            return Err(failed(format!(
                "the certificate issued does not pass a node's check ({e}); does {} belong to \
                 {}?",
                ca_key_path.display(),
                ca_dir.join(CA_CERT).display()
            )));
        }
    }
    let validity = if days == 0 {
        "already expired (--days 0)".to_owned()
    } else {
        format!("valid {days} days")
    };
    Ok(format!(
        "certificate {} for {} ({validity})\nkey         {}\n",
        cert_path.display(),
        unique.join(", "),
        key_path.display()
    ))
}

/// Where `issue` writes NAME's certificate and key.
pub fn paths(out: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        out.join(format!("{name}.pem")),
        out.join(format!("{name}-key.pem")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn a_ca_and_an_issued_certificate_load_as_a_nodes_tls_and_keys_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_ca(dir.path()).expect("a CA");
        assert_eq!(mode(&dir.path().join(CA_KEY)), 0o600);
        let names = vec!["n1".to_owned(), "10.1.2.3".to_owned()];
        let text = issue("n1", dir.path(), &names, 30, dir.path()).expect("issued");
        assert!(text.contains("n1, 10.1.2.3"), "{text}");
        let (cert, key) = paths(dir.path(), "n1");
        assert_eq!(mode(&key), 0o600);
        let files = TlsConfig {
            cert,
            key,
            ca: dir.path().join(CA_CERT),
        };
        files.load().expect("loads");
        let again = create_ca(dir.path()).expect_err("no overwrite").to_string();
        assert!(again.contains("exists already"), "{again}");
        let again = issue("n1", dir.path(), &names, 30, dir.path()).expect_err("no overwrite");
        assert!(again.to_string().contains("exists already"), "{again}");
    }

    #[test]
    fn a_certificate_of_zero_days_is_refused_as_expired_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        create_ca(dir.path()).expect("a CA");
        issue("old", dir.path(), &["old".to_owned()], 0, dir.path()).expect("issued");
        let (cert, key) = paths(dir.path(), "old");
        let files = TlsConfig {
            cert: cert.clone(),
            key,
            ca: dir.path().join(CA_CERT),
        };
        let err = files.load().expect_err("expired").to_string();
        assert!(
            err.contains(&cert.display().to_string()) && err.contains("has expired"),
            "{err}"
        );
    }

    #[test]
    fn issuing_without_a_ca_says_how_to_make_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = issue("n1", dir.path(), &["n1".to_owned()], 1, dir.path())
            .expect_err("no CA")
            .to_string();
        assert!(err.contains("create-ca"), "{err}");
    }
}

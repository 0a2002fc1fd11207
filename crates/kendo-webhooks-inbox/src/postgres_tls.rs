//! TLS to Postgres through rustls, as libpq's `sslmode` and `sslrootcert`
//! describe it, so a managed Postgres that requires TLS can hold the inbox.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and for the host connected to |
//!
//! `sslrootcert` is the path of a PEM file of one or more CA certificates;
//! `verify-ca` and `verify-full` need it.
//!
//! ```
//! use kendo_webhooks_inbox::PostgresTls;
//!
//! let (url, _tls) = PostgresTls::from_url("postgres://crm@db/crm?sslmode=require")?;
//! assert_eq!(url, "postgres://crm@db/crm?sslmode=require");
//! # Ok::<(), kendo_webhooks_inbox::InboxError>(())
//! ```

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::InboxError;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `prefer`/`require` without a CA: encrypted, the certificate not checked.
    None,
    /// `verify-ca` (or `require` with a CA): signed by a trusted CA.
    Ca,
    /// `verify-full`: signed by a trusted CA, for the host connected to.
    Full,
}

/// The TLS connector of a Postgres URL, for `tokio_postgres`
/// (`Config::connect(tls)`); see the [module docs](self).
#[derive(Clone)]
pub struct PostgresTls {
    check: Check,
    connect: MakeRustlsConnect,
}

impl fmt::Debug for PostgresTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTls")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl PostgresTls {
    /// Reads `sslmode` and `sslrootcert` from a Postgres URL
    /// (`postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`) or
    /// key-value string (`host=… sslmode=verify-full sslrootcert=…`), reads
    /// the CA file, and returns the connection string for `tokio_postgres`
    /// (`verify-ca`/`verify-full` become `require`, which it knows, and
    /// `sslrootcert` is taken out) with the connector that does the checks.
    ///
    /// # Errors
    ///
    /// An unknown `sslmode`, `verify-ca`/`verify-full` without
    /// `sslrootcert`, or a CA file that cannot be read or holds no
    /// certificate.
    pub fn from_url(url: &str) -> Result<(String, Self), InboxError> {
        let (rest, mode, root) = take_tls_params(url);
        let bad = |reason: String| {
            InboxError::unavailable("the Postgres TLS settings are not valid", reason)
        };
        let (mode_for_client, check) = match (mode.as_deref(), root.is_some()) {
            (Some("disable"), _) => ("disable", Check::None),
            (None | Some("prefer"), _) => ("prefer", Check::None),
            (Some("require"), false) => ("require", Check::None),
            (Some("require" | "verify-ca"), true) => ("require", Check::Ca),
            (Some("verify-full"), true) => ("require", Check::Full),
            (Some(mode @ ("verify-ca" | "verify-full")), false) => {
                return Err(bad(format!(
                    "sslmode={mode} needs sslrootcert=<a PEM file of the CA certificates>"
                )))
            }
            (Some(other), _) => {
                return Err(bad(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?;
        let config = match (check, root) {
            (Check::None, _) | (_, None) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
            (check, Some(path)) => {
                let pem = std::fs::read(&path)
                    .map_err(|e| bad(format!("cannot read sslrootcert {path}: {e}")))?;
                let mut roots = RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(&pem) {
                    let certificate = certificate
                        .map_err(|e| bad(format!("sslrootcert {path} is not PEM: {e}")))?;
                    roots
                        .add(certificate)
                        .map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(bad(format!("sslrootcert {path} holds no certificate")));
                }
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                if check == Check::Full {
                    builder.with_webpki_verifier(verifier).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
                        .with_no_client_auth()
                }
            }
        };
        let url = with_sslmode(&rest, mode_for_client, mode.is_some());
        Ok((
            url,
            Self {
                check,
                connect: MakeRustlsConnect::new(config),
            },
        ))
    }
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        MakeTlsConnect::<S>::make_tls_connect(&mut self.connect, domain)
    }
}

/// The connection string without `sslmode` and `sslrootcert`, and their
/// values (percent-decoded in a URL).
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                !take(key, percent_decode(value))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, mode, root)
    } else {
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                !take(key.trim(), value.trim().to_owned())
            })
            .collect();
        (kept.join(" "), mode, root)
    }
}

/// Puts `sslmode=<mode>` back (only when one was given: the client's default
/// is `prefer` anyway).
fn with_sslmode(rest: &str, mode: &str, given: bool) -> String {
    if !given {
        return rest.to_owned();
    }
    if rest.starts_with("postgres://") || rest.starts_with("postgresql://") {
        let separator = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{separator}sslmode={mode}")
    } else {
        format!("{rest} sslmode={mode}")
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `prefer`/`require`: the handshake is checked, the certificate is not
/// (libpq's behaviour for these modes).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_and_verify_modes_become_require() {
        assert_eq!(
            take_tls_params("postgres://u@h/d?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgres://u@h/d?application_name=x".to_owned(),
                Some("verify-full".to_owned()),
                Some("/etc/ca.pem".to_owned())
            )
        );
        assert_eq!(
            take_tls_params("host=h sslmode=require dbname=d"),
            (
                "host=h dbname=d".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            with_sslmode("postgres://u@h/d", "require", true),
            "postgres://u@h/d?sslmode=require"
        );
        assert_eq!(
            with_sslmode("postgres://u@h/d", "prefer", false),
            "postgres://u@h/d"
        );
    }

    #[test]
    fn verify_modes_need_a_ca_file_and_unknown_modes_are_refused() {
        for url in [
            "postgres://u@h/d?sslmode=verify-full",
            "postgres://u@h/d?sslmode=verify-ca",
            "postgres://u@h/d?sslmode=allow",
            "postgres://u@h/d?sslmode=require&sslrootcert=/no/such/file.pem",
        ] {
            assert!(PostgresTls::from_url(url).is_err(), "{url}");
        }
        let (url, tls) = PostgresTls::from_url("postgres://u@h/d?sslmode=require").unwrap();
        assert_eq!(url, "postgres://u@h/d?sslmode=require");
        assert_eq!(tls.check, Check::None);
    }
}

//! A tenant's identity: its own certificate authority, the serving certificate it signs,
//! the client certificates it issues, its bearer token, and the kubeconfig built from them.
//!
//! Only the CA (certificate and key) and the admin token are persisted; serving and client
//! certificates are issued anew each time the process starts, so they never silently
//! expire under a running cluster.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokens::Signer;

/// What is persisted of a tenant's identity (in the store, outside every tenant's prefix).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredIdentity {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// The secret the tenant admin's bearer token is derived from (hex).
    pub token_secret: String,
    /// The key service-account tokens are signed with (P-256, PKCS#8 PEM). Identities
    /// stored before tokens existed lack it until [`StoredIdentity::complete`] adds it.
    #[serde(default)]
    pub service_account_key_pem: Option<String>,
}

impl StoredIdentity {
    /// Adds what an identity stored by an older version lacks; whether anything was added
    /// (and the identity must be stored again).
    pub(crate) fn complete(&mut self) -> Result<bool> {
        if self.service_account_key_pem.is_some() {
            return Ok(false);
        }
        self.service_account_key_pem = Some(KeyPair::generate()?.serialize_pem());
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("certificate generation failed")]
    Rcgen(#[from] rcgen::Error),
    #[error("the stored identity is unreadable")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// A tenant's identity, loaded and ready to serve.
pub struct Identity {
    ca_cert_der: CertificateDer<'static>,
    ca_cert_pem: String,
    ca_key: KeyPair,
    admin_token: String,
    /// The serving certificate and its key, for the TLS handshake.
    pub serving: Arc<CertifiedKey>,
    /// Signs and checks the tenant's service-account tokens.
    pub tokens: Signer,
}

/// Valid from an hour ago (clock skew) for `days` days.
fn validity(params: &mut CertificateParams, days: u64) {
    let y2k = 946_684_800;
    let since_y2k = u64::try_from(jiff::Timestamp::now().as_second() - y2k).unwrap_or(0);
    let now = rcgen::date_time_ymd(2000, 1, 1) + Duration::from_secs(since_y2k);
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(days * 86_400);
}

/// A new tenant identity: a fresh CA and token secret.
pub(crate) fn generate(tenant: &str) -> Result<StoredIdentity> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("vcluster-ca-{tenant}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    use rand::Rng;
    let secret: [u8; 32] = rand::rng().random();
    let mut stored = StoredIdentity {
        ca_cert_pem: cert.pem(),
        ca_key_pem: key.serialize_pem(),
        token_secret: hex(&secret),
        service_account_key_pem: None,
    };
    stored.complete()?;
    Ok(stored)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Identity {
    /// Loads a stored identity and issues a serving certificate for `names` (IP addresses
    /// and DNS names the kubeconfigs use); service-account tokens are issued as `issuer`.
    pub fn load(stored: &StoredIdentity, names: &[String], issuer: String) -> Result<Self> {
        let ca_key = KeyPair::from_pem(&stored.ca_key_pem)?;
        let ca_cert_der =
            rustls::pki_types::pem::PemObject::from_pem_slice(stored.ca_cert_pem.as_bytes())
                .map_err(|e| Error::Corrupt(Box::new(e)))?;
        if stored.token_secret.len() != 64 {
            return Err(Error::Corrupt(
                "the token secret is not 32 bytes of hex".into(),
            ));
        }
        // The admin token: derived from the secret, so it can be handed out again.
        let admin_token = hex(&Sha256::digest(format!("{}:admin", stored.token_secret)));
        let serving = Arc::new(issue_serving(&ca_cert_der, &ca_key, names)?);
        let sa_key = stored
            .service_account_key_pem
            .as_deref()
            .ok_or_else(|| Error::Corrupt("no service-account signing key".into()))?;
        let tokens = Signer::new(&KeyPair::from_pem(sa_key)?.serialize_der(), issuer)
            .map_err(|e| Error::Corrupt(e.to_string().into()))?;
        Ok(Self {
            ca_cert_der,
            ca_cert_pem: stored.ca_cert_pem.clone(),
            ca_key,
            admin_token,
            serving,
            tokens,
        })
    }

    /// Issues a client certificate: CN is the user, each O a group.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for group in groups {
            dn.push(DnType::OrganizationName, *group);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 365);
        let issuer = Issuer::from_ca_cert_der(&self.ca_cert_der, &self.ca_key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_cert_der
    }

    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Whether `token` is this tenant's admin token (compared in constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        token.len() == self.admin_token.len()
            && token
                .bytes()
                .zip(self.admin_token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

fn issue_serving(
    ca_der: &CertificateDer<'static>,
    ca_key: &KeyPair,
    names: &[String],
) -> Result<CertifiedKey> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "vcluster-apiserver");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params, 365);
    let cert = params.signed_by(&key, &Issuer::from_ca_cert_der(ca_der, ca_key)?)?;
    certified(cert.der().clone(), &key, ca_der)
}

fn certified(
    cert: CertificateDer<'static>,
    key: &KeyPair,
    ca: &CertificateDer<'static>,
) -> Result<CertifiedKey> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| Error::Corrupt(Box::new(e)))?;
    Ok(CertifiedKey::new(vec![cert, ca.clone()], signing))
}

/// Renders a kubeconfig for one tenant and one user.
///
/// Its entries are named after the tenant, `vcluster_<tenant>` for the cluster and the
/// context and `vcluster_<tenant>_<user>` for the credentials, so that kubeconfigs of
/// several tenants merge (`KUBECONFIG=a:b`) without one's entries hiding another's. The
/// user's own name is in its entry because a credential is one user's: two users of one
/// tenant then keep their credentials apart in a merged file too.
pub struct Kubeconfig<'a> {
    /// The tenant's name.
    pub cluster: &'a str,
    pub server: &'a str,
    pub tls_server_name: Option<&'a str>,
    pub ca_pem: &'a str,
    /// The user's name (the client certificate's CN, or whose token it is).
    pub user: &'a str,
    pub client_cert_pem: Option<&'a str>,
    pub client_key_pem: Option<&'a str>,
    pub token: Option<&'a str>,
}

impl Kubeconfig<'_> {
    pub fn render(&self) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let cluster = format!("vcluster_{}", self.cluster);
        let user = format!("{cluster}_{}", self.user);
        let mut out = String::new();
        out.push_str("apiVersion: v1\nkind: Config\nclusters:\n");
        out.push_str(&format!(
            "- name: {cluster}\n  cluster:\n    server: {}\n",
            self.server
        ));
        out.push_str(&format!(
            "    certificate-authority-data: {}\n",
            b64(self.ca_pem)
        ));
        if let Some(name) = self.tls_server_name {
            out.push_str(&format!("    tls-server-name: {name}\n"));
        }
        out.push_str(&format!("users:\n- name: {user}\n  user:\n"));
        if let (Some(cert), Some(key)) = (self.client_cert_pem, self.client_key_pem) {
            out.push_str(&format!("    client-certificate-data: {}\n", b64(cert)));
            out.push_str(&format!("    client-key-data: {}\n", b64(key)));
        }
        if let Some(token) = self.token {
            out.push_str(&format!("    token: {token}\n"));
        }
        out.push_str(&format!(
            "contexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\ncurrent-context: {cluster}\n"
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_storage_and_checks_its_token() {
        let stored = generate("a").expect("generate");
        let json = serde_json::to_string(&stored).expect("serialize");
        let back: StoredIdentity = serde_json::from_str(&json).expect("deserialize");
        let issuer = || "https://a.vcluster.local".to_owned();
        let id = Identity::load(
            &back,
            &["127.0.0.1".into(), "a.vcluster.local".into()],
            issuer(),
        )
        .expect("load");
        let token = id.admin_token().to_owned();
        assert!(id.is_admin_token(&token));
        let again = Identity::load(&back, &[], issuer()).expect("load again");
        assert_eq!(
            again.admin_token(),
            token,
            "the token is the same after a restart"
        );
        assert!(!id.is_admin_token("not-the-token"));
        let (cert, key) = id
            .issue_client("alice", &["dev", "ops"])
            .expect("client cert");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }
}

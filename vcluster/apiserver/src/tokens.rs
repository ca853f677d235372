//! Service-account tokens: JWTs signed (ES256) with the tenant's own key, as the
//! TokenRequest API (`serviceaccounts/<name>/token`, `kubectl create token`) issues them and
//! as bearer tokens present them back.
//!
//! A token names its issuer (`https://<tenant>.<domain>`, unique per tenant), its audiences,
//! its service account (name and uid) and optionally the object it is bound to; it is
//! accepted only by the tenant whose key signed it, only while unexpired, only for an
//! audience the server answers to, and only while the service account (and the bound
//! object) still exist with the same uid — checked by the caller against the store.
//!
//! The JWS compact form (`base64url(header).base64url(claims).base64url(r||s)`) is written
//! here over ring's ECDSA: `jsonwebtoken` would bring a second crypto stack (RustCrypto or
//! aws-lc) beside the ring that TLS and certificates already use, for three lines of framing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The shortest and longest lives a TokenRequest may ask for (upstream's limits).
pub(crate) const MIN_EXPIRATION: i64 = 600;
pub(crate) const MAX_EXPIRATION: i64 = 1 << 32;
/// The life of a token whose request names none.
pub(crate) const DEFAULT_EXPIRATION: i64 = 3600;

/// What a service-account token says (the claims kube-apiserver puts in bound tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The claims of a token for the service account `kubernetes` names, issued `at` for
    /// `audiences` and valid for `life` seconds.
    pub fn issued(
        issuer: String,
        audiences: Vec<String>,
        at: i64,
        life: i64,
        kubernetes: KubernetesClaims,
    ) -> Self {
        Self {
            iss: issuer,
            sub: format!(
                "system:serviceaccount:{}:{}",
                kubernetes.namespace, kubernetes.serviceaccount.name
            ),
            aud: audiences,
            iat: at,
            nbf: at,
            exp: at + life,
            kubernetes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectClaim,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<ObjectClaim>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<ObjectClaim>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<ObjectClaim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    pub name: String,
    pub uid: String,
}

/// A tenant's token signer and verifier.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
}

impl Signer {
    /// A signer over a PKCS#8 P-256 key, issuing as `issuer`.
    pub fn new(pkcs8: &[u8], issuer: String) -> Result<Self, ring::error::KeyRejected> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )?;
        // The key id: a digest of the public key, as JWKS consumers match it.
        let kid = B64.encode(Sha256::digest(key.public_key().as_ref()));
        Ok(Self { key, kid, issuer })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The OIDC discovery document (`/.well-known/openid-configuration`): where a relying
    /// party finds the keys that verify this tenant's tokens.
    pub fn openid_configuration(&self) -> serde_json::Value {
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// The key set (`/openid/v1/jwks`): the public key, as a JWK.
    pub fn jwks(&self) -> serde_json::Value {
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let point = self.key.public_key().as_ref();
        serde_json::json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "kid": self.kid,
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        }]})
    }

    /// The signed token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let mut token = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), token.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        token.push('.');
        token.push_str(&B64.encode(signature.as_ref()));
        token
    }

    /// The claims of `token` if this signer signed it, it is valid at `now` (unix seconds)
    /// and it is meant for this server (its audiences include the issuer).
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        self.verify_for(token, now, std::slice::from_ref(&self.issuer))
    }

    /// The same, for a token meant for any of `audiences` (a TokenReview's).
    pub fn verify_for(&self, token: &str, now: i64, audiences: &[String]) -> Option<Claims> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        let header: serde_json::Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &B64.decode(signature).ok()?)
            .ok()?;
        let claims: Claims = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
        let valid = claims.iss == self.issuer
            && claims.nbf <= now
            && now < claims.exp
            && claims.aud.iter().any(|a| audiences.contains(a));
        valid.then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(issuer: &str) -> Signer {
        let key = rcgen::KeyPair::generate().expect("key");
        Signer::new(&key.serialize_der(), issuer.into()).expect("signer")
    }

    fn claims(iss: &str, aud: &[&str], exp: i64) -> Claims {
        Claims {
            iss: iss.into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: aud.iter().map(|a| (*a).to_owned()).collect(),
            iat: 1000,
            nbf: 1000,
            exp,
            kubernetes: KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: ObjectClaim {
                    name: "sa".into(),
                    uid: "u1".into(),
                },
                pod: None,
                secret: None,
                node: None,
            },
        }
    }

    #[test]
    fn a_token_is_valid_only_where_when_and_for_whom_it_was_issued() {
        let a = signer("https://a.vcluster.local");
        let b = signer("https://b.vcluster.local");
        let good = claims(a.issuer(), &["https://a.vcluster.local"], 2000);
        let token = a.sign(&good);
        assert_eq!(token.split('.').count(), 3, "a JWS compact serialization");
        assert_eq!(a.verify(&token, 1500), Some(good.clone()));
        assert_eq!(b.verify(&token, 1500), None, "another tenant's key");
        assert_eq!(a.verify(&token, 2000), None, "expired");
        assert_eq!(a.verify(&token, 999), None, "not yet valid");
        let elsewhere = a.sign(&claims(a.issuer(), &["vault"], 2000));
        assert_eq!(a.verify(&elsewhere, 1500), None, "for another audience");
        // A changed claim breaks the signature.
        let (head, rest) = token.split_once('.').expect("parts");
        let (_, sig) = rest.split_once('.').expect("parts");
        let mut forged = good;
        forged.kubernetes.serviceaccount.name = "admin".into();
        let forged = format!(
            "{head}.{}.{sig}",
            B64.encode(serde_json::to_vec(&forged).expect("json"))
        );
        assert_eq!(a.verify(&forged, 1500), None, "forged claims");
        assert_eq!(a.verify("a.b.c", 1500), None);
    }

    #[test]
    fn the_key_set_verifies_the_tokens() {
        let a = signer("https://a.vcluster.local");
        let token = a.sign(&claims(a.issuer(), &[a.issuer()], 2000));
        let jwk = &a.jwks()["keys"][0];
        let coordinate = |c: &str| {
            B64.decode(jwk[c].as_str().expect("coordinate"))
                .expect("b64")
        };
        let point = [vec![4u8], coordinate("x"), coordinate("y")].concat();
        let (signed, signature) = token.rsplit_once('.').expect("parts");
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(signed.as_bytes(), &B64.decode(signature).expect("b64"))
            .expect("the published key verifies the token");
        let header: serde_json::Value = serde_json::from_slice(
            &B64.decode(token.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["kid"], jwk["kid"]);
        assert_eq!(
            a.openid_configuration()["jwks_uri"],
            "https://a.vcluster.local/openid/v1/jwks"
        );
    }
}

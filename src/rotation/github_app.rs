//! The `github-app` token provider: a GitHub App's installation access token. The App's
//! private key (the PEM GitHub lets you download, read from `credentials {fromRef, key}`) signs
//! an RS256 JWT — `iat` 60 s in the past against clock drift, `exp` 9 minutes ahead (GitHub
//! allows at most 10), `iss` the App's id — with the `jsonwebtoken` crate (on *ring*), and the
//! JWT is exchanged at `POST {apiUrl}/app/installations/{installationId}/access_tokens` for a
//! token that lasts one hour; its `expires_at` is kept beside it. Settings: `appId`,
//! `installationId`, an optional `apiUrl` (GitHub Enterprise Server: `https://HOST/api/v3`).
//!
//! Errors name the host, the HTTP status and GitHub's message, and say what to check; an
//! answer is never quoted beyond GitHub's `message`.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use thiserror::Error;
use zeroize::Zeroizing;

use super::tokens::{Issued, error_chain};
use crate::domain::manifest::{RotationSpec, SecretValue};
use crate::domain::snapshot::Snapshot;

/// How far back `iat` is set, against a clock that runs ahead of GitHub's.
const IAT_BACK_SECS: i64 = 60;
/// How far ahead `exp` is set (GitHub refuses more than 10 minutes).
const EXP_AHEAD_SECS: i64 = 540;

/// Why the github-app provider cannot be used, or why minting a token failed.
#[derive(Debug, Error)]
pub enum GithubAppError {
    #[error("github-app rotation needs settings.{0}")]
    NoSetting(&'static str),
    #[error(
        "github-app rotation needs credentials {{fromRef, key}} naming the App's private key (PEM)"
    )]
    NoCredentials,
    #[error(
        "secretstore/{store} has no value for {key:?}: store the App's private key there (`orchestrator secret set {store} {key} --from-file app.private-key.pem`)"
    )]
    NoKey { store: String, key: String },
    #[error(
        "secretstore/{store} key {key:?} is not an RSA private key in PEM form ({why}): store the .pem file GitHub generated for the App"
    )]
    BadKey {
        store: String,
        key: String,
        why: String,
    },
    #[error(
        "the App's private key could not sign its JWT ({0}): store the .pem file GitHub generated for the App"
    )]
    Sign(String),
    /// No answer.
    #[error("{host}: POST {path} failed: {detail}")]
    Request {
        host: String,
        path: String,
        detail: String,
    },
    /// GitHub answered with a refusal.
    #[error("{host} answered HTTP {status} to POST {path}: {message}; {hint}")]
    Refused {
        host: String,
        path: String,
        status: u16,
        message: String,
        hint: &'static str,
    },
    #[error("{host} answered HTTP {status} to POST {path} without a token and its expires_at")]
    Unreadable {
        host: String,
        path: String,
        status: u16,
    },
}

impl GithubAppError {
    /// Whether trying again cannot help until the operator changes something.
    pub fn permanent(&self) -> bool {
        match self {
            GithubAppError::Request { .. } => false,
            GithubAppError::Refused { status, .. } | GithubAppError::Unreadable { status, .. } => {
                *status != 429 && *status < 500
            }
            GithubAppError::NoSetting(_)
            | GithubAppError::NoCredentials
            | GithubAppError::NoKey { .. }
            | GithubAppError::BadKey { .. }
            | GithubAppError::Sign(_) => true,
        }
    }
}

/// One App installation and the key that speaks for the App.
pub struct GithubApp {
    api: String,
    host: String,
    app_id: serde_json::Value,
    installation: String,
    key: EncodingKey,
}

/// The App JWT's claims.
#[derive(serde::Serialize)]
struct Claims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a serde_json::Value,
}

/// The part of GitHub's answer that is kept.
#[derive(serde::Deserialize)]
struct Minted {
    token: String,
    expires_at: DateTime<Utc>,
}

impl GithubApp {
    /// The provider `spec` describes; the private key is read from the store it names.
    pub fn from_spec(
        spec: &RotationSpec,
        project: &str,
        snapshot: &Snapshot,
    ) -> Result<GithubApp, GithubAppError> {
        let number = |name: &'static str| match spec.settings.get(name) {
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(GithubAppError::NoSetting(name)),
        };
        let app = number("appId")?;
        // GitHub takes the App's id as a number (a client id, `Iv1.…`, as a string).
        let app_id = app
            .parse::<u64>()
            .map_or_else(|_| serde_json::json!(app), |n| serde_json::json!(n));
        let installation = number("installationId")?;
        let api = spec
            .settings
            .get("apiUrl")
            .and_then(|v| v.as_str())
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_owned();
        let host = reqwest::Url::parse(&api)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| api.clone());
        let creds = spec
            .credentials
            .as_ref()
            .ok_or(GithubAppError::NoCredentials)?;
        let pem = snapshot
            .secret_store(project, &creds.from_ref)
            .and_then(|s| s.data.get(&creds.key))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| GithubAppError::NoKey {
                store: creds.from_ref.clone(),
                key: creds.key.clone(),
            })?;
        let key = pkcs1_der(pem.expose())
            .map(|der| EncodingKey::from_rsa_der(&der))
            .map_err(|e| GithubAppError::BadKey {
                store: creds.from_ref.clone(),
                key: creds.key.clone(),
                why: e.to_string(),
            })?;
        // A DER that is no RSA key is refused by *ring* on the first signature (`Sign`).
        Ok(GithubApp {
            api,
            host,
            app_id,
            installation,
            key,
        })
    }

    /// The App's JWT at `now`.
    fn jwt(&self, now: DateTime<Utc>) -> Result<SecretValue, GithubAppError> {
        let claims = Claims {
            iat: now.timestamp() - IAT_BACK_SECS,
            exp: now.timestamp() + EXP_AHEAD_SECS,
            iss: &self.app_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretValue::new)
            .map_err(|e| GithubAppError::Sign(e.to_string()))
    }

    /// Mints an installation token at `now`.
    pub async fn mint(
        &self,
        http: &reqwest::Client,
        now: DateTime<Utc>,
    ) -> Result<Issued, GithubAppError> {
        let jwt = self.jwt(now)?;
        let path = format!("/app/installations/{}/access_tokens", self.installation);
        let url = format!("{}{path}", self.api);
        let host = self.host.clone();
        let resp = http
            .post(&url)
            .bearer_auth(jwt.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| GithubAppError::Request {
                host: host.clone(),
                path: path.clone(),
                detail: error_chain(&e),
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| GithubAppError::Request {
            host: host.clone(),
            path: path.clone(),
            detail: error_chain(&e),
        })?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .map_or_else(
                    || "(no message)".to_owned(),
                    |m| m.chars().take(300).collect(),
                );
            let hint = match status {
                401 => {
                    "GitHub refused the App's JWT: check settings.appId, the private key in the credentials store, and this machine's clock"
                }
                403 => "the installation may be suspended, or the App lacks the permission",
                404 => {
                    "no such installation of this App: check settings.installationId (GET /app/installations lists them)"
                }
                422 => "GitHub refused the request as sent",
                _ => "retried with backoff",
            };
            return Err(GithubAppError::Refused {
                host,
                path,
                status,
                message,
                hint,
            });
        }
        let minted: Minted =
            serde_json::from_slice(&body).map_err(|_| GithubAppError::Unreadable {
                host: host.clone(),
                path: path.clone(),
                status,
            })?;
        Ok(Issued {
            token: SecretValue::new(minted.token),
            refresh_token: None,
            expires_in: None,
            expires_at: Some(minted.expires_at),
        })
    }
}

/// Why the stored private key is not a PKCS#1 PEM.
#[derive(Debug, Error)]
enum PemError {
    #[error("it is a PKCS#8 key; convert it with `openssl rsa -in KEY.pem -traditional`")]
    Pkcs8,
    #[error("it does not start with `-----BEGIN RSA PRIVATE KEY-----` and end with its END line")]
    NotPem,
    #[error("its body is not base64")]
    Base64,
}

/// The DER inside a PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`, the form GitHub hands out).
fn pkcs1_der(pem: &str) -> Result<Zeroizing<Vec<u8>>, PemError> {
    use base64::Engine;
    let text = pem.trim();
    let Some(body) = text
        .strip_prefix("-----BEGIN RSA PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END RSA PRIVATE KEY-----"))
    else {
        return Err(if text.starts_with("-----BEGIN PRIVATE KEY-----") {
            PemError::Pkcs8
        } else {
            PemError::NotPem
        });
    };
    let b64: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| PemError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pkcs1_pem_is_taken() {
        let pem = include_str!("../../tests/fixtures/github-app-test-only.private-key.pem");
        let der = pkcs1_der(pem).expect("the fixture is PKCS#1");
        // An RSAPrivateKey is a DER SEQUENCE.
        assert_eq!(der.first(), Some(&0x30));
        assert!(matches!(
            pkcs1_der("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"),
            Err(PemError::Pkcs8)
        ));
        assert!(matches!(pkcs1_der("ghp_not_a_key"), Err(PemError::NotPem)));
        assert!(matches!(
            pkcs1_der("-----BEGIN RSA PRIVATE KEY-----\n!!!\n-----END RSA PRIVATE KEY-----"),
            Err(PemError::Base64)
        ));
    }
}

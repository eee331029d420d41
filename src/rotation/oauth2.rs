//! The `oauth2` token provider: the refresh-token grant of RFC 6749 §6 against
//! `settings.tokenUrl`, with the client's id and secret from the store `credentials` names
//! (`client_id` beside the secret). The request and the standard answer are the `oauth2`
//! crate's (HTTP Basic client authentication with the RFC's form-encoding, or the id and secret
//! as form fields with `clientAuth: body`); its HTTP goes through the daemon's own reqwest
//! client. Slack's token rotation (`oauth.v2.access`, `grant_type=refresh_token`) answers
//! HTTP 200 even when it refuses (`{"ok": false, "error": "invalid_refresh_token"}`): that
//! answer is read as the refusal it is. Google, Atlassian and Zoom answer as the RFC says.
//!
//! Errors name the host, the HTTP status and the platform's error code and description, say
//! whether trying again may help ([`OAuth2Error::permanent`]), and for a refused refresh token
//! what the operator must do. A response body is never quoted: it may hold a token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use ::oauth2::basic::{BasicClient, BasicErrorResponseType};
use ::oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};
use thiserror::Error;

use super::tokens::{Issued, error_chain};
use crate::domain::manifest::{RotationSpec, SecretValue};
use crate::domain::snapshot::Snapshot;

/// The key of the token's store that holds the refresh token unless `refreshTokenKey` says.
pub const REFRESH_TOKEN_KEY: &str = "refresh_token";
/// The key of the credentials store that holds the client id.
pub const CLIENT_ID_KEY: &str = "client_id";

/// Why the oauth2 provider cannot be used, or why a refresh failed.
#[derive(Debug, Error)]
pub enum OAuth2Error {
    #[error("oauth2 rotation needs settings.tokenUrl (the platform's token endpoint)")]
    NoTokenUrl,
    #[error("settings.tokenUrl {url:?} is not a URL")]
    BadTokenUrl { url: String },
    #[error(
        "oauth2 rotation needs credentials {{fromRef, key}} naming the client secret (the same store holds `client_id`)"
    )]
    NoCredentials,
    #[error("secretstore/{store} has no value for {key:?}: {hint}")]
    Missing {
        store: String,
        key: String,
        hint: &'static str,
    },
    /// No answer.
    #[error("{host}: the token request failed: {detail}")]
    Request { host: String, detail: String },
    /// The platform answered with a refusal.
    #[error("{host} answered HTTP {status}: {error}{}; {hint}", described(.description))]
    Refused {
        host: String,
        status: u16,
        error: String,
        description: Option<String>,
        hint: String,
        permanent: bool,
    },
    /// An answer that is not a token response.
    #[error("{host} answered HTTP {status} with something that is not a token response ({detail})")]
    Unreadable {
        host: String,
        status: u16,
        detail: String,
    },
}

fn described(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
}

impl OAuth2Error {
    /// Whether trying again cannot help until the operator changes something.
    pub fn permanent(&self) -> bool {
        match self {
            OAuth2Error::Request { .. } => false,
            OAuth2Error::Refused { permanent, .. } => *permanent,
            // A proxy's error page or a half-deployed endpoint: worth another try.
            OAuth2Error::Unreadable { status, .. } => {
                *status < 500 && *status != 429 && *status != 200
            }
            OAuth2Error::NoTokenUrl
            | OAuth2Error::BadTokenUrl { .. }
            | OAuth2Error::NoCredentials
            | OAuth2Error::Missing { .. } => true,
        }
    }
}

/// One token endpoint, the client that asks it and the refresh token it presents.
pub struct OAuth2 {
    token_url: TokenUrl,
    host: String,
    client_id: SecretValue,
    client_secret: SecretValue,
    auth: AuthType,
    scope: Option<String>,
    refresh_token: SecretValue,
    /// The key of the token's store that holds the refresh token.
    pub refresh_key: String,
    store: String,
}

impl OAuth2 {
    /// The provider `spec` (of secretstore `store`) describes, with its values read from
    /// `snapshot`.
    pub fn from_spec(
        spec: &RotationSpec,
        project: &str,
        store: &str,
        snapshot: &Snapshot,
    ) -> Result<OAuth2, OAuth2Error> {
        let setting = |name: &str| spec.settings.get(name).and_then(|v| v.as_str());
        let url = setting("tokenUrl").ok_or(OAuth2Error::NoTokenUrl)?;
        let token_url = TokenUrl::new(url.to_owned()).map_err(|_| OAuth2Error::BadTokenUrl {
            url: url.to_owned(),
        })?;
        let host = token_url
            .url()
            .host_str()
            .map_or_else(|| url.to_owned(), str::to_owned);
        let creds = spec
            .credentials
            .as_ref()
            .ok_or(OAuth2Error::NoCredentials)?;
        let value = |from: &str, key: &str, hint: &'static str| {
            snapshot
                .secret_store(project, from)
                .and_then(|s| s.data.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| OAuth2Error::Missing {
                    store: from.to_owned(),
                    key: key.to_owned(),
                    hint,
                })
        };
        let refresh_key = setting("refreshTokenKey")
            .unwrap_or(REFRESH_TOKEN_KEY)
            .to_owned();
        Ok(OAuth2 {
            client_id: value(
                &creds.from_ref,
                CLIENT_ID_KEY,
                "set the OAuth client's id: `orchestrator secret set STORE client_id`",
            )?,
            client_secret: value(
                &creds.from_ref,
                &creds.key,
                "set the OAuth client's secret: `orchestrator secret set STORE KEY`",
            )?,
            refresh_token: value(
                store,
                &refresh_key,
                "authorize the app at the platform, then `orchestrator secret set STORE refresh_token` with the refresh token it gave",
            )?,
            auth: match setting("clientAuth") {
                Some("body") => AuthType::RequestBody,
                _ => AuthType::BasicAuth,
            },
            scope: setting("scope").map(str::to_owned),
            token_url,
            host,
            refresh_key,
            store: store.to_owned(),
        })
    }

    /// Presents the refresh token at the token endpoint; the answer's access token, its
    /// lifetime and the new refresh token if the platform rotated it.
    pub async fn refresh(&self, http: &reqwest::Client) -> Result<Issued, OAuth2Error> {
        let client = BasicClient::new(ClientId::new(self.client_id.expose().to_owned()))
            .set_client_secret(ClientSecret::new(self.client_secret.expose().to_owned()))
            .set_auth_type(self.auth.clone())
            .set_token_uri(self.token_url.clone());
        let refresh = RefreshToken::new(self.refresh_token.expose().to_owned());
        let mut request = client.exchange_refresh_token(&refresh);
        if let Some(scope) = &self.scope {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let send = Transport {
            http: http.clone(),
            status: Arc::new(AtomicU16::new(0)),
        };
        let answer = request.request_async(&send).await;
        let status = send.status.load(Ordering::Relaxed);
        match answer {
            Ok(t) => Ok(Issued {
                token: SecretValue::new(t.access_token().secret().clone()),
                refresh_token: t
                    .refresh_token()
                    .map(|r| SecretValue::new(r.secret().clone()))
                    .filter(|r| !r.is_empty()),
                expires_in: t.expires_in(),
                expires_at: None,
            }),
            Err(e) => Err(self.error(status, e)),
        }
    }

    fn error<RE: std::error::Error + 'static>(
        &self,
        status: u16,
        e: RequestTokenError<RE, ::oauth2::basic::BasicErrorResponse>,
    ) -> OAuth2Error {
        let host = self.host.clone();
        match e {
            RequestTokenError::ServerResponse(r) => {
                let code = r.error().as_ref().to_owned();
                self.refused(status, code, r.error_description().cloned())
            }
            RequestTokenError::Request(e) => OAuth2Error::Request {
                host,
                detail: error_chain(&e),
            },
            RequestTokenError::Parse(e, body) => {
                // Slack refuses with HTTP 200: {"ok": false, "error": "invalid_refresh_token"}.
                if let Ok(slack) = serde_json::from_slice::<SlackAnswer>(&body)
                    && !slack.ok
                {
                    return self.refused(status, slack.error, None);
                }
                // Where it did not parse, without any value of it: `missing field
                // `access_token``, or only the path when the message quotes what it found.
                let (inner, path) = (e.inner().to_string(), e.path().to_string());
                let detail = if inner.contains('"') {
                    format!("unexpected value at `{path}`")
                } else if path == "." {
                    inner
                } else {
                    format!("{inner} at `{path}`")
                };
                OAuth2Error::Unreadable {
                    host,
                    status,
                    detail,
                }
            }
            RequestTokenError::Other(text) => OAuth2Error::Unreadable {
                host,
                status,
                detail: text,
            },
        }
    }

    /// A refusal with error code `code`: whether it is for good, and what to do about it.
    fn refused(&self, status: u16, code: String, description: Option<String>) -> OAuth2Error {
        let fix_token = format!(
            "the refresh token was revoked, has expired or was already used: re-authorize the app at the platform, then store the new tokens with `orchestrator secret set {} {}` (and `access_token`); the old values are kept until then",
            self.store, self.refresh_key
        );
        let fix_client = "check client_id and the client secret in the credentials store (and settings.clientAuth: `basic` or `body`)".to_owned();
        let (permanent, hint) = match code.as_str() {
            c if c == BasicErrorResponseType::InvalidGrant.as_ref() => (true, fix_token),
            "invalid_refresh_token" | "token_revoked" | "token_expired" | "invalid_token" => {
                (true, fix_token)
            }
            c if c == BasicErrorResponseType::InvalidClient.as_ref()
                || c == BasicErrorResponseType::UnauthorizedClient.as_ref() =>
            {
                (true, fix_client)
            }
            "bad_client_secret" | "invalid_client_id" => (true, fix_client),
            // Slack's and the RFC's "try again later".
            "ratelimited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "temporarily_unavailable" => (false, "retried with backoff".to_owned()),
            _ if status == 429 || status >= 500 => (false, "retried with backoff".to_owned()),
            _ => (
                true,
                "see the platform's documentation of this error; the old values are kept"
                    .to_owned(),
            ),
        };
        OAuth2Error::Refused {
            host: self.host.clone(),
            status,
            error: code,
            description: description.map(|d| self.masked(&d)),
            hint,
            permanent,
        }
    }
}

impl OAuth2 {
    /// The platform's text cut to 300 characters, with the values this request sent masked (a
    /// platform may quote what it refused).
    fn masked(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in [&self.refresh_token, &self.client_secret] {
            if !v.is_empty() {
                out = out.replace(v.expose(), "***");
            }
        }
        out.chars().take(300).collect()
    }
}

/// The crate's HTTP client: the daemon's reqwest client, remembering the answer's status
/// (which the crate's errors leave out).
struct Transport {
    http: reqwest::Client,
    status: Arc<AtomicU16>,
}

type Answer = Result<::oauth2::HttpResponse, reqwest::Error>;

impl<'c> ::oauth2::AsyncHttpClient<'c> for Transport {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send + 'c>>;

    fn call(&'c self, req: ::oauth2::HttpRequest) -> Self::Future {
        let (http, status) = (self.http.clone(), self.status.clone());
        Box::pin(async move {
            let req = reqwest::Request::try_from(req)?;
            let resp = http.execute(req).await?;
            status.store(resp.status().as_u16(), Ordering::Relaxed);
            let (code, headers) = (resp.status(), resp.headers().clone());
            let body = resp.bytes().await?.to_vec();
            let mut out = ::oauth2::HttpResponse::new(body);
            *out.status_mut() = code;
            *out.headers_mut() = headers;
            Ok(out)
        })
    }
}

/// Slack's envelope: every Web API answer says `ok`, and `error` when it is false.
#[derive(serde::Deserialize)]
struct SlackAnswer {
    ok: bool,
    #[serde(default)]
    error: String,
}

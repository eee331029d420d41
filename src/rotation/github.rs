//! The `github` rotation provider: the repository webhook's secret, set through the REST API
//! (`PATCH /repos/{owner}/{name}/hooks/{id}/config`), and a ping (`POST …/pings`) as the test
//! delivery. Its settings: `repository` (owner/name), `hookId`, an optional `apiUrl`, and a token
//! read from `credentials {fromRef, key}`. Errors say whether the platform may have taken the
//! value anyway: an answer refused it, a lost connection leaves it unknown.

use thiserror::Error;

use crate::domain::manifest::{RotationSpec, SecretValue};
use crate::domain::snapshot::Snapshot;

/// Why the github provider cannot be used, or why a call failed.
#[derive(Debug, Error)]
pub enum GithubError {
    #[error("github rotation needs settings.repository (owner/name)")]
    NoRepository,
    #[error("github rotation needs settings.hookId (the repository webhook's id)")]
    NoHookId,
    #[error("github rotation needs credentials {{fromRef, key}} with a token")]
    NoCredentials,
    #[error("the token {from_ref}/{key} is missing or empty")]
    NoToken { from_ref: String, key: String },
    /// No answer: the request may have been applied.
    #[error("github: {method} {url} failed: {}", without_url(.error))]
    Request {
        method: reqwest::Method,
        url: String,
        error: reqwest::Error,
    },
    /// An answer that refused the request: it was not applied.
    #[error("github answered {code} to {method} {url}")]
    Refused {
        code: u16,
        method: reqwest::Method,
        url: String,
    },
}

impl GithubError {
    /// Whether the platform may have applied the request that failed.
    pub fn maybe_applied(&self) -> bool {
        match self {
            GithubError::Request { .. } => true,
            GithubError::NoRepository
            | GithubError::NoHookId
            | GithubError::NoCredentials
            | GithubError::NoToken { .. }
            | GithubError::Refused { .. } => false,
        }
    }
}

/// One repository webhook and the token that may change it.
pub struct Github {
    api: String,
    repository: String,
    hook: String,
    token: SecretValue,
}

impl Github {
    /// The provider `spec` describes; the token is read from the store it names in `snapshot`.
    pub fn from_spec(
        spec: &RotationSpec,
        project: &str,
        snapshot: &Snapshot,
    ) -> Result<Github, GithubError> {
        let setting = |name: &str| spec.settings.get(name).and_then(|v| v.as_str());
        let repository = setting("repository")
            .ok_or(GithubError::NoRepository)?
            .to_owned();
        let hook = match spec.settings.get("hookId") {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(GithubError::NoHookId),
        };
        let api = setting("apiUrl")
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_owned();
        let creds = spec
            .credentials
            .as_ref()
            .ok_or(GithubError::NoCredentials)?;
        let token = snapshot
            .secret_store(project, &creds.from_ref)
            .and_then(|s| s.data.get(&creds.key))
            .filter(|t| !t.is_empty())
            .cloned()
            .ok_or_else(|| GithubError::NoToken {
                from_ref: creds.from_ref.clone(),
                key: creds.key.clone(),
            })?;
        Ok(Github {
            api,
            repository,
            hook,
            token,
        })
    }

    /// Makes `value` the webhook's secret.
    pub async fn set(
        &self,
        http: &reqwest::Client,
        value: &SecretValue,
    ) -> Result<(), GithubError> {
        let body = serde_json::json!({ "secret": value.expose() });
        self.call(http, reqwest::Method::PATCH, "config", Some(body))
            .await
    }

    /// Asks GitHub for a ping, signed with the webhook's current secret.
    pub async fn ping(&self, http: &reqwest::Client) -> Result<(), GithubError> {
        self.call(http, reqwest::Method::POST, "pings", None).await
    }

    /// One call of the repository webhook's REST API (`hooks/{id}/{what}`).
    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        what: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), GithubError> {
        let url = format!(
            "{}/repos/{}/hooks/{}/{what}",
            self.api, self.repository, self.hook
        );
        let mut request = http
            .request(method.clone(), &url)
            .bearer_auth(self.token.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(b) = body {
            request = request.json(&b);
        }
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(error) => return Err(GithubError::Request { method, url, error }),
        };
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            code => Err(GithubError::Refused { code, method, url }),
        }
    }
}

/// A reqwest error without its URL (it carries nothing secret, but stays short).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text
            .replace(u.as_str(), "")
            .replace(" ()", "")
            .trim()
            .to_owned(),
        None => text,
    }
}

//! The `github` rotation provider: the repository webhook's secret, set through the REST API
//! (`PATCH /repos/{owner}/{name}/hooks/{id}/config`), and a ping (`POST …/pings`) as the test
//! delivery. Its settings: `repository` (owner/name), `hookId`, an optional `apiUrl`, and a token
//! read from `credentials {fromRef, key}`. Errors name the host, the HTTP status and GitHub's own
//! message (`{"message": …}`), or for a lost connection the host and the whole cause chain
//! (`platform.rs`), and say whether the platform may have taken the value anyway: an answer
//! refused it, a lost connection leaves it unknown.

use thiserror::Error;

use super::platform;
use crate::domain::manifest::{RotationSpec, SecretValue};
use crate::domain::redact::Redactor;
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
    /// No answer: the request may have been applied (unless the connection never opened).
    #[error("github: no answer from {} to {method} {url}: {}", platform::host(.url), platform::cause_chain(.error))]
    Request {
        method: reqwest::Method,
        url: String,
        error: reqwest::Error,
    },
    /// An answer that refused the request: it was not applied.
    #[error(
        "github answered {code}{} to {method} {url}{}",
        reason(*.code),
        .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Refused {
        code: u16,
        method: reqwest::Method,
        url: String,
        /// GitHub's own message, redacted.
        message: Option<String>,
    },
}

/// ` Not Found` after `404`: the status's reason phrase, if it has one.
fn reason(code: u16) -> String {
    reqwest::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

impl GithubError {
    /// Whether the platform may have applied the request that failed.
    pub fn maybe_applied(&self) -> bool {
        match self {
            // A connection that never opened carried no request.
            GithubError::Request { error, .. } => !error.is_connect(),
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

    /// The repository webhook, as `owner/name hook ID`.
    pub fn hook(&self) -> String {
        format!("{} hook {}", self.repository, self.hook)
    }

    /// Makes `value` the webhook's secret.
    pub async fn set(
        &self,
        http: &reqwest::Client,
        value: &SecretValue,
    ) -> Result<(), GithubError> {
        let body = serde_json::json!({ "secret": value.expose() });
        self.call(http, reqwest::Method::PATCH, "config", Some((body, value)))
            .await
    }

    /// Asks GitHub for a ping, signed with the webhook's current secret.
    pub async fn ping(&self, http: &reqwest::Client) -> Result<(), GithubError> {
        self.call(http, reqwest::Method::POST, "pings", None).await
    }

    /// One call of the repository webhook's REST API (`hooks/{id}/{what}`), with a JSON body
    /// and the secret it carries (redacted from GitHub's answer).
    async fn call(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        what: &str,
        body: Option<(serde_json::Value, &SecretValue)>,
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
        let mut sent = vec![self.token.expose().to_owned()];
        if let Some((b, value)) = body {
            request = request.json(&b);
            sent.push(value.expose().to_owned());
        }
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(error) => return Err(GithubError::Request { method, url, error }),
        };
        let code = resp.status().as_u16();
        if (200..=299).contains(&code) {
            return Ok(());
        }
        // The body of a refusal is GitHub's explanation; losing it loses only the explanation.
        let body = resp.bytes().await.unwrap_or_default();
        Err(GithubError::Refused {
            code,
            method,
            url,
            message: platform::message(&body, &Redactor::new(sent)),
        })
    }
}

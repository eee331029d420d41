//! What a platform's HTTP API said, for the providers' errors: an answer's status and the
//! platform's own error message (GitHub answers `{"message": …, "errors": [...]}`; OAuth servers
//! `{"error": …, "error_description": …}`), and a lost connection's host and whole cause chain
//! (reqwest's own text stops at "error sending request for url"). The platform's text is
//! shortened and has the request's secrets redacted: an API may echo what it was sent.

use std::error::Error;

use crate::domain::redact::Redactor;

/// How much of a platform's message an error quotes (characters).
const MESSAGE_CHARS: usize = 300;

/// The host (and port, if given) of `url`, or the URL itself if it has none.
pub fn host(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// The causes of `e`, outermost first, joined with `: `; a cause whose text its parent already
/// holds is left out, and so is the URL reqwest puts in its own text.
pub fn cause_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let top = match e.url() {
        Some(u) => e
            .to_string()
            .replace(&format!(" for url ({})", u.as_str()), "")
            .replace(&format!(" ({})", u.as_str()), ""),
        None => e.to_string(),
    };
    parts.push(top);
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// The platform's error message in an answer's `body`: GitHub's `message` (with the `errors`
/// it lists), an OAuth server's `error` and `error_description`, or the body's start if it is
/// not such JSON; `None` for an empty body. Secrets of `redactor` are redacted.
pub fn message(body: &[u8], redactor: &Redactor) -> Option<String> {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => json_message(&v),
        Err(_) => Some(String::from_utf8_lossy(body).trim().to_owned()),
    }
    .filter(|t| !t.is_empty())?;
    let text = redactor.redact_str(&text);
    let mut short: String = text.chars().take(MESSAGE_CHARS).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    Some(short)
}

fn json_message(v: &serde_json::Value) -> Option<String> {
    let s = |k: &str| v.get(k).and_then(|m| m.as_str()).map(str::to_owned);
    if let Some(m) = s("message") {
        // GitHub's validation failures list what failed.
        let details: Vec<String> = v
            .get("errors")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                serde_json::Value::String(t) => Some(t.clone()),
                serde_json::Value::Object(o) => o
                    .get("message")
                    .or_else(|| o.get("code"))
                    .and_then(|m| m.as_str())
                    .map(str::to_owned),
                _ => None,
            })
            .collect();
        return Some(if details.is_empty() {
            m
        } else {
            format!("{m} ({})", details.join("; "))
        });
    }
    match (s("error"), s("error_description")) {
        (Some(e), Some(d)) => Some(format!("{e}: {d}")),
        (Some(e), None) => Some(e),
        (None, _) => Some(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, want: Option<&str>) {
        let got = message(body.as_bytes(), &Redactor::new(["s3cret"]));
        assert_eq!(got.as_deref(), want, "{body}");
    }

    #[test]
    fn the_platforms_message_is_quoted_redacted() {
        check(r#"{"message": "Bad credentials"}"#, Some("Bad credentials"));
        check(
            r#"{"message": "Validation Failed", "errors": [{"resource": "Hook", "code": "custom", "message": "secret is too short"}]}"#,
            Some("Validation Failed (secret is too short)"),
        );
        check(
            r#"{"error": "invalid_grant", "error_description": "token revoked"}"#,
            Some("invalid_grant: token revoked"),
        );
        check("<html>Bad gateway</html>", Some("<html>Bad gateway</html>"));
        check(
            r#"{"message": "bad secret s3cret"}"#,
            Some("bad secret [REDACTED]"),
        );
        check("", None);
        let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(400));
        let got = message(long.as_bytes(), &Redactor::none()).expect("message");
        assert_eq!(got.chars().count(), MESSAGE_CHARS + 1);
    }

    #[test]
    fn hosts() {
        assert_eq!(host("https://api.github.com/repos/a/b"), "api.github.com");
        assert_eq!(host("http://127.0.0.1:9/x"), "127.0.0.1:9");
        assert_eq!(host("not a url"), "not a url");
    }
}

//! A delivery's body and payload: reading the body within its size limit and deadline
//! ([`read_within`]), and decoding it as JSON, or as a form turned into a JSON object
//! ([`payload`]). A form whose only field is `payload` holding a JSON object — what Slack sends
//! for interactivity (buttons, shortcuts, modal submissions) and GitHub for a webhook whose
//! content type is `application/x-www-form-urlencoded` — is that object. Each refusal is a
//! typed error that names its HTTP status.

use std::time::Duration;

use futures_util::StreamExt;
use warp::Buf;
use warp::http::{HeaderMap, StatusCode};
use warp::hyper::body::Bytes;

use super::BODY_LIMIT;
use crate::domain::signature::Scheme;

/// Why a delivery's body was not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    /// More than [`BODY_LIMIT`] bytes, declared or streamed.
    #[error("the body is larger than {BODY_LIMIT} bytes")]
    TooLarge,
    /// The connection failed while the body was arriving.
    #[error("the body could not be read")]
    Unreadable,
    /// Not all of it arrived within the body deadline.
    #[error("the body did not arrive within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
}

impl BodyError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// Why a delivery's body is not a payload (always a 400).
#[derive(Debug, thiserror::Error)]
pub(super) enum PayloadError {
    #[error("the body is empty: a delivery carries a JSON or form payload")]
    Empty,
    #[error("the body is not UTF-8 text")]
    NotUtf8,
    #[error("the body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the form body has a bad %-escape")]
    BadEscape,
    #[error("the form body is not UTF-8 text")]
    FormNotUtf8,
}

/// Reads the body within `deadline` (see [`read_body`]).
pub(super) async fn read_within<S, B>(
    deadline: Duration,
    headers: &HeaderMap,
    body: S,
) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    tokio::time::timeout(deadline, read_body(headers, body))
        .await
        .map_err(|_| BodyError::TimedOut(deadline))?
}

/// Reads the body, refusing more than [`BODY_LIMIT`] bytes (declared or streamed).
async fn read_body<S, B>(headers: &HeaderMap, mut body: S) -> Result<Bytes, BodyError>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(BODY_LIMIT as u64) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if out.len() + chunk.remaining() > BODY_LIMIT {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

/// Whether the request declares a form body (`application/x-www-form-urlencoded`).
pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.trim_start()
                .get(..FORM.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(FORM))
        })
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The delivery's payload as JSON, and as the text `{payload}` gives the task: a JSON body as
/// sent; a form turned into an object of strings (a Slack slash command), except a form whose
/// only field is `payload` holding a JSON object, which is that object, its text as sent (Slack
/// interactivity, GitHub's form deliveries).
pub(super) fn payload(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(serde_json::Value, String), PayloadError> {
    if body.is_empty() {
        return Err(PayloadError::Empty);
    }
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
    if is_form(headers) {
        let pairs = form_pairs(text)?;
        if let [(name, inner)] = pairs.as_slice()
            && name == "payload"
            && let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_str(inner)
        {
            return Ok((value, inner.clone()));
        }
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let value = serde_json::Value::Object(map);
        let text = value.to_string();
        return Ok((value, text));
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(PayloadError::NotJson)?;
    Ok((value, text.to_owned()))
}

/// Decodes `application/x-www-form-urlencoded` text.
fn form_pairs(text: &str) -> Result<Vec<(String, String)>, PayloadError> {
    fn decode(s: &str) -> Result<String, PayloadError> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or(PayloadError::BadEscape)?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| PayloadError::FormNotUtf8)
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The longest id taken from a body for the replay window (a longer one is not an id).
const MAX_BODY_ID: usize = 256;

/// The delivery id a platform puts in the body rather than a header, for the replay window:
/// Slack's `event_id`, Stripe's event `id` (`evt_…`), LINE's `webhookEventId`s (a redelivery
/// carries the same events). None for other schemes, or when absent or over 256 bytes.
pub(super) fn body_delivery_id(scheme: Scheme, value: &serde_json::Value) -> Option<String> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let id = match scheme {
        Scheme::Slack => value.get("event_id").and_then(text),
        Scheme::Stripe => value
            .get("id")
            .and_then(text)
            .filter(|id| id.starts_with("evt_")),
        Scheme::Line => {
            let ids: Vec<String> = value
                .get("events")?
                .as_array()?
                .iter()
                .map(|e| e.get("webhookEventId").and_then(text))
                .collect::<Option<_>>()?;
            (!ids.is_empty()).then(|| ids.join(","))
        }
        _ => None,
    };
    id.filter(|id| !id.is_empty() && id.len() <= MAX_BODY_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let pairs = form_pairs("command=%2Fdeploy&text=prod+now&empty=").unwrap_or_default();
        assert_eq!(
            pairs,
            vec![
                ("command".to_string(), "/deploy".to_string()),
                ("text".into(), "prod now".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(form_pairs("a=%zz").is_err());
    }

    fn form_headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = content_type.parse() {
            h.insert(warp::http::header::CONTENT_TYPE, v);
        }
        h
    }

    /// `(content type, body)` → the payload's JSON and its text, or the error's words.
    fn check(content_type: &str, body: &str, want: Result<(&str, &str), &str>) {
        let got = payload(&form_headers(content_type), body.as_bytes());
        match (got, want) {
            (Ok((value, text)), Ok((json, want_text))) => {
                let json: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                assert_eq!((&value, text.as_str()), (&json, want_text), "{body}");
            }
            (Err(e), Err(words)) => assert!(e.to_string().contains(words), "{e}"),
            (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn payloads_of_each_platform_shape() {
        let form = "application/x-www-form-urlencoded";
        // JSON as sent, byte for byte.
        check(
            "application/json",
            r#"{"ref": "refs/heads/main"}"#,
            Ok((
                r#"{"ref":"refs/heads/main"}"#,
                r#"{"ref": "refs/heads/main"}"#,
            )),
        );
        // A slash command: every field a string.
        check(
            form,
            "command=%2Fdeploy&text=prod+now",
            Ok((
                r#"{"command":"/deploy","text":"prod now"}"#,
                r#"{"command":"/deploy","text":"prod now"}"#,
            )),
        );
        // Interactivity: the `payload` field's JSON object is the payload, as sent.
        let inner = r#"{"type": "block_actions", "actions": [{"action_id": "approve"}]}"#;
        let body = format!(
            "payload={}",
            inner
                .replace('%', "%25")
                .replace(' ', "+")
                .replace('"', "%22")
                .replace('{', "%7B")
                .replace('}', "%7D")
        );
        check(
            "application/x-www-form-urlencoded; charset=utf-8",
            &body,
            Ok((inner, inner)),
        );
        // Not an object, or beside other fields: an ordinary form.
        check(
            form,
            "payload=%5B1%5D",
            Ok((r#"{"payload":"[1]"}"#, r#"{"payload":"[1]"}"#)),
        );
        check(
            form,
            "payload=%7B%7D&x=1",
            Ok((r#"{"payload":"{}","x":"1"}"#, r#"{"payload":"{}","x":"1"}"#)),
        );
        check(
            form,
            "payload=%7Bnot+json",
            Ok((r#"{"payload":"{not json"}"#, r#"{"payload":"{not json"}"#)),
        );
        check(
            "Application/X-WWW-Form-Urlencoded",
            "a=1",
            Ok((r#"{"a":"1"}"#, r#"{"a":"1"}"#)),
        );
        check(form, "a=%zz", Err("bad %-escape"));
        check("application/json", "a=1", Err("not valid JSON"));
        check("application/json", "", Err("empty"));
    }

    #[test]
    fn platforms_that_name_a_delivery_in_the_body_give_its_id() {
        use serde_json::json;
        let id = |scheme, v| body_delivery_id(scheme, &v);
        assert_eq!(
            id(Scheme::Slack, json!({"event_id": "Ev1"})).as_deref(),
            Some("Ev1")
        );
        assert_eq!(
            id(Scheme::Stripe, json!({"id": "evt_1", "object": "event"})).as_deref(),
            Some("evt_1")
        );
        assert_eq!(
            id(Scheme::Stripe, json!({"id": "cus_1"})),
            None,
            "not an event id"
        );
        assert_eq!(
            id(
                Scheme::Line,
                json!({"events": [{"webhookEventId": "01A"}, {"webhookEventId": "01B"}]})
            )
            .as_deref(),
            Some("01A,01B")
        );
        assert_eq!(
            id(Scheme::Line, json!({"events": []})),
            None,
            "LINE's verify request"
        );
        assert_eq!(id(Scheme::Line, json!({"events": [{"type": "x"}]})), None);
        assert_eq!(id(Scheme::Github, json!({"event_id": "Ev1"})), None);
        let long = "e".repeat(300);
        assert_eq!(id(Scheme::Slack, json!({ "event_id": long })), None);
    }
}

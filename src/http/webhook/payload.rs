//! A delivery's body and payload: reading the body within its size limit and deadline
//! ([`read_within`]), and decoding it as JSON, or as a form turned into a JSON object
//! ([`payload`]). Each refusal is a typed error that names its HTTP status.

use std::time::Duration;

use futures_util::StreamExt;
use warp::Buf;
use warp::http::{HeaderMap, StatusCode};
use warp::hyper::body::Bytes;

use super::BODY_LIMIT;

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

/// The delivery's payload as JSON: a JSON body, or a form turned into an object.
pub(super) fn payload(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(serde_json::Value, String), PayloadError> {
    if body.is_empty() {
        return Err(PayloadError::Empty);
    }
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
    let form = headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let mut map = serde_json::Map::new();
        for (k, v) in form_pairs(text)? {
            map.insert(k, serde_json::Value::String(v));
        }
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
}

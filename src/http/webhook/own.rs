//! How the webhook server tells the daemon's own requests from everyone else's. `orchestrator
//! webhook test` has the daemon sign a delivery and send it through its own webhook listener, so
//! that the whole path (route, scheme, keys, filter) is checked; such a delivery proves nothing
//! about the platform, and must never count as a verification of a new key. The daemon draws a
//! random token (32 bytes from the operating system) once per process and sends it in the
//! [`OWN_HEADER`] header of its own requests; the server removes that header from every request
//! before anything else reads the headers, and takes a request as the daemon's own only when the
//! header carried exactly this token (compared in constant time). The token lives only in the
//! daemon's memory — never on disk, in a log or in an answer — so an outside sender cannot
//! forge it; a request whose header carries anything else is an outside request like any other.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use thiserror::Error;
use warp::http::HeaderMap;

/// The header that marks the daemon's own requests to its webhook server.
pub const OWN_HEADER: &str = "x-orchestrator-own-request";

/// The operating system's random source failed.
#[derive(Debug, Error)]
#[error("the operating system's random source failed")]
pub struct NoRandom;

/// This process's token for its own webhook requests.
#[derive(Clone)]
pub struct OwnToken(Arc<str>);

impl std::fmt::Debug for OwnToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnToken(***)")
    }
}

impl OwnToken {
    /// A fresh random token.
    pub fn generate() -> Result<OwnToken, NoRandom> {
        use chacha20poly1305::aead::Generate;
        let bytes = chacha20poly1305::Key::try_generate().map_err(|_| NoRandom)?;
        Ok(OwnToken(hex::encode(bytes).into()))
    }

    /// The value to send in [`OWN_HEADER`].
    pub fn value(&self) -> &str {
        &self.0
    }

    /// Removes [`OWN_HEADER`] from `headers`; whether it carried this token.
    pub fn take(&self, headers: &mut HeaderMap) -> bool {
        match headers.remove(OWN_HEADER) {
            Some(v) => v.as_bytes().ct_eq(self.0.as_bytes()).into(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_token_marks_an_own_request_and_the_header_is_always_removed() {
        let token = OwnToken::generate().expect("random");
        let other = OwnToken::generate().expect("random");
        assert_ne!(token.value(), other.value());
        assert_eq!(token.value().len(), 64);
        let check = |value: Option<&str>, want: bool| {
            let mut h = HeaderMap::new();
            if let Some(v) = value {
                h.insert(OWN_HEADER, v.parse().expect("header value"));
            }
            h.insert("x-other", "kept".parse().expect("header value"));
            assert_eq!(token.take(&mut h), want, "{value:?}");
            assert!(h.get(OWN_HEADER).is_none(), "the header was not removed");
            assert!(h.get("x-other").is_some());
        };
        check(Some(token.value()), true);
        check(Some(other.value()), false);
        check(Some(&token.value()[..63]), false);
        check(Some(""), false);
        check(None, false);
        assert_eq!(format!("{token:?}"), "OwnToken(***)");
    }
}

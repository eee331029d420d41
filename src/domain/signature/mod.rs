//! Webhook signature verification: one verifier per scheme of SPEC §5 (plain HMAC, GitHub, Slack,
//! LINE, Stripe, Standard Webhooks) and the signer that produces what each platform would send.
//! This module owns the byte-exact rules of every platform (which header carries what, which
//! string is signed, how the digest is spelled) so that the webhook server only routes and
//! answers. It is pure: headers arrive through the [`Headers`] trait instead of an HTTP type and
//! the clock arrives as `now_unix`, which lets the tests pin each rule to the vectors the
//! platforms publish. Every usable key is tried (multi-key rotation), comparisons are constant
//! time, and no error message or `Debug` output ever contains a key or a signature.
//!
//! Layout: the schemes, the verifier and the signer here; reading a request's signature,
//! timestamp and delivery id from its headers in `request.rs`.

mod request;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use request::SignedRequest;

/// The timestamp tolerance of the timestamped schemes when the trigger sets none, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The valid scheme names, in the order of [`Scheme::ALL`], for error messages.
const SCHEME_NAMES: &str = "hmac-sha256, github, slack, line, stripe, standard-webhooks";

const GITHUB_DELIVERY: &str = "X-GitHub-Delivery";
const SLACK_TIMESTAMP: &str = "X-Slack-Request-Timestamp";
const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";

/// The prefix that marks a Standard Webhooks secret as base64; the key is what follows, decoded.
const WHSEC_PREFIX: &[u8] = b"whsec_";

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 tag.
type Tag = [u8; 32];

/// The length of a [`Tag`] in standard, padded base64.
const TAG_BASE64_LEN: usize = 44;

/// A verification scheme (SPEC §5). Its name, as written in manifests, is one of
/// "hmac-sha256", "github", "slack", "line", "stripe" and "standard-webhooks".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Hex HMAC-SHA256 of the raw body, with an optional `sha256=` prefix.
    HmacSha256,
    /// `X-Hub-Signature-256: sha256=<hex>` over the raw body.
    Github,
    /// `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack,
    /// `X-Line-Signature: <base64>` over the raw body, keyed with the channel secret.
    Line,
    /// `Stripe-Signature: t=…,v1=…` over `{t}.{body}`.
    Stripe,
    /// `webhook-signature: v1,<base64> …` over `{webhook-id}.{webhook-timestamp}.{body}`.
    StandardWebhooks,
}

impl Scheme {
    /// Every scheme, in the order of their names in error messages.
    pub const ALL: [Scheme; 6] = [
        Scheme::HmacSha256,
        Scheme::Github,
        Scheme::Slack,
        Scheme::Line,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
    ];

    /// The name of the scheme as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "hmac-sha256",
            Scheme::Github => "github",
            Scheme::Slack => "slack",
            Scheme::Line => "line",
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }

    /// Parses a scheme name exactly as [`Scheme::name`] spells it.
    pub fn parse(s: &str) -> Result<Scheme, SignatureError> {
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.name() == s)
            .ok_or_else(|| SignatureError::UnknownScheme { name: s.to_owned() })
    }

    /// Infers the scheme from a configured `signatureHeader`, compared case-insensitively:
    /// `X-Hub-Signature-256` is github, `X-Slack-Signature` slack, `X-Line-Signature` line,
    /// `Stripe-Signature` stripe, `webhook-signature` standard-webhooks, and anything else
    /// (or nothing) is hmac-sha256.
    pub fn infer(signature_header: Option<&str>) -> Scheme {
        let Some(header) = signature_header.map(str::trim) else {
            return Scheme::HmacSha256;
        };
        Scheme::ALL
            .into_iter()
            .find(|scheme| scheme.default_header().eq_ignore_ascii_case(header))
            .unwrap_or(Scheme::HmacSha256)
    }

    /// The header the signature is read from when none is configured.
    pub fn default_header(self) -> &'static str {
        match self {
            Scheme::HmacSha256 => "X-Webhook-Signature",
            Scheme::Github => "X-Hub-Signature-256",
            Scheme::Slack => "X-Slack-Signature",
            Scheme::Line => "X-Line-Signature",
            Scheme::Stripe => "Stripe-Signature",
            Scheme::StandardWebhooks => "webhook-signature",
        }
    }

    /// Whether the signed message carries a timestamp, so that the tolerance window applies.
    pub fn is_timestamped(self) -> bool {
        match self {
            Scheme::Slack | Scheme::Stripe | Scheme::StandardWebhooks => true,
            Scheme::HmacSha256 | Scheme::Github | Scheme::Line => false,
        }
    }

    /// The header the signature is read from: the configured one for the schemes whose
    /// platforms let it vary, the platform's own otherwise.
    fn signature_header(self, configured: Option<&str>) -> &str {
        match (self, configured) {
            (Scheme::HmacSha256 | Scheme::Github | Scheme::Line, Some(header)) => header,
            _ => self.default_header(),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scheme {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scheme::parse(s)
    }
}

/// Read-only access to the headers of a request, so that this module needs no HTTP crate.
pub trait Headers {
    /// The raw value of the header called `name`, matched case-insensitively. When a header is
    /// repeated, implementations return the first occurrence.
    fn get(&self, name: &str) -> Option<&[u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for [(K, V)] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> Headers for [(K, V); N] {
    fn get(&self, name: &str) -> Option<&[u8]> {
        <[(K, V)] as Headers>::get(self, name)
    }
}

/// Lets a borrowed slice, which cannot itself become a `&dyn Headers`, be passed as `&slice`.
impl<T: Headers + ?Sized> Headers for &T {
    fn get(&self, name: &str) -> Option<&[u8]> {
        T::get(self, name)
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        <[(K, V)] as Headers>::get(self, name)
    }
}

/// One candidate key: a SecretStore entry's name and its raw value.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    /// The name of the key inside its store, reported when it matches.
    pub name: &'a str,
    /// The raw bytes of the value. An empty value is never used as a key.
    pub secret: &'a [u8],
}

impl fmt::Debug for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How to verify one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyParams<'a> {
    /// The scheme of the trigger.
    pub scheme: Scheme,
    /// The configured `signatureHeader`. It replaces the default header of hmac-sha256, github
    /// and line; the other platforms fix their header names, so it is ignored for them.
    pub signature_header: Option<&'a str>,
    /// How far a signed timestamp may lie from `now_unix`, either way, in seconds.
    pub tolerance_secs: u64,
    /// The current time in unix seconds, read once by the caller.
    pub now_unix: i64,
}

impl VerifyParams<'_> {
    /// Parameters with the scheme's default header and [`DEFAULT_TOLERANCE_SECS`].
    pub fn new(scheme: Scheme, now_unix: i64) -> Self {
        VerifyParams {
            scheme,
            signature_header: None,
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
            now_unix,
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The index into the `keys` given to [`verify`] of the first key that matched.
    pub key_index: usize,
    /// The id to de-duplicate deliveries by: `X-GitHub-Delivery` for github (not covered by
    /// GitHub's signature, so it only catches honest redeliveries) and `webhook-id` for
    /// standard-webhooks (signed). Slack events are de-duplicated by the event id in the body.
    pub delivery_id: Option<String>,
    /// The signed timestamp of the timestamped schemes, in unix seconds.
    pub timestamp: Option<i64>,
}

/// Why a request was refused. The details are for the daemon log only; the HTTP client gets a
/// generic 401. No variant carries a key or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A manifest names a scheme that does not exist.
    #[error("unknown signature scheme {name:?}: expected one of {SCHEME_NAMES}")]
    UnknownScheme {
        /// The name as written.
        name: String,
    },
    /// A header the scheme requires is absent.
    #[error("missing header {header}")]
    MissingHeader {
        /// The header's name.
        header: String,
    },
    /// A header is present but cannot be read as the scheme spells it.
    #[error("malformed header {header}: {reason}")]
    MalformedHeader {
        /// The header's name.
        header: String,
        /// What is wrong with it, without its value.
        reason: &'static str,
    },
    /// The signed timestamp is absent: its header is missing, or `Stripe-Signature` has no `t=`.
    #[error("missing timestamp in header {header}")]
    MissingTimestamp {
        /// The header that should carry the timestamp.
        header: &'static str,
    },
    /// The signed timestamp is not a count of unix seconds.
    #[error("malformed timestamp in header {header}: expected unix seconds")]
    MalformedTimestamp {
        /// The header that carries the timestamp.
        header: &'static str,
    },
    /// The signed timestamp is older than the tolerance allows: a replay or a long delay.
    #[error(
        "stale timestamp: signed {age_secs}s ago, beyond the tolerance of {tolerance_secs}s \
         (a replay, or a clock behind)"
    )]
    StaleTimestamp {
        /// How long ago the request was signed.
        age_secs: u64,
        /// The tolerance that was exceeded.
        tolerance_secs: u64,
    },
    /// The signed timestamp is further in the future than the tolerance allows.
    #[error(
        "future timestamp: signed {ahead_secs}s ahead, beyond the tolerance of {tolerance_secs}s \
         (check the clocks of the sender and of this host)"
    )]
    FutureTimestamp {
        /// How far ahead of now the request was signed.
        ahead_secs: u64,
        /// The tolerance that was exceeded.
        tolerance_secs: u64,
    },
    /// There is no usable key, so every request is refused (fail closed).
    #[error(
        "no key configured: the secret store holds no non-empty value usable by this scheme, \
         so every request is refused"
    )]
    NoKeyConfigured,
    /// Every usable key was tried and none produced a signature the request carries.
    #[error(
        "no key matched the signature ({tried} usable keys tried): check that the platform and \
         the secret store hold the same secret"
    )]
    NoKeyMatched {
        /// How many usable keys were tried.
        tried: usize,
    },
}

/// Verifies a request signed in `p.scheme` against every usable key of `keys` and reports the
/// first that matched. The signature is checked before the timestamp window, so a stale or
/// future timestamp is reported only for a request that was genuinely signed.
pub fn verify(
    p: &VerifyParams<'_>,
    headers: &dyn Headers,
    body: &[u8],
    keys: &[Key<'_>],
) -> Result<Verified, SignatureError> {
    let keys = usable_keys(p.scheme, keys);
    if keys.is_empty() {
        return Err(SignatureError::NoKeyConfigured);
    }
    let request = SignedRequest::parse(p, headers)?;
    let key_index = first_matching_key(&keys, &request, body)
        .ok_or(SignatureError::NoKeyMatched { tried: keys.len() })?;
    if let Some(timestamp) = request.timestamp {
        check_window(timestamp, p)?;
    }
    Ok(Verified {
        key_index,
        delivery_id: request.delivery_id,
        timestamp: request.timestamp,
    })
}

/// Produces the headers a platform would send for `body` signed with `secret` at `now_unix`.
/// `signature_header` is honoured as [`verify`] honours it. `id` becomes `webhook-id` for
/// standard-webhooks (which needs one) and `X-GitHub-Delivery` for github (omitted when empty);
/// the other schemes ignore it. A secret that [`verify`] would not use (empty, or `whsec_` with
/// bad base64) still yields headers, which then fail verification with
/// [`SignatureError::NoKeyConfigured`]: that is what `orchestrator webhook test` should report.
pub fn sign(
    scheme: Scheme,
    signature_header: Option<&str>,
    secret: &[u8],
    body: &[u8],
    now_unix: i64,
    id: &str,
) -> Vec<(String, String)> {
    let header = scheme.signature_header(signature_header).to_owned();
    let key = derive_key(scheme, secret).unwrap_or(Cow::Borrowed(secret));
    // HMAC accepts keys of any length, so the fallback never happens; it keeps this total.
    let tag = |prefix: &[&[u8]]| hmac_sha256(&key, prefix, body).unwrap_or_default();
    let timestamp = now_unix.to_string();
    match scheme {
        Scheme::HmacSha256 => vec![(header, hex::encode(tag(&[])))],
        Scheme::Github => {
            let mut headers = vec![(header, format!("sha256={}", hex::encode(tag(&[]))))];
            if !id.is_empty() {
                headers.push((GITHUB_DELIVERY.to_owned(), id.to_owned()));
            }
            headers
        }
        Scheme::Slack => {
            let tag = tag(&[b"v0:", timestamp.as_bytes(), b":"]);
            vec![
                (SLACK_TIMESTAMP.to_owned(), timestamp),
                (header, format!("v0={}", hex::encode(tag))),
            ]
        }
        Scheme::Line => vec![(header, BASE64.encode(tag(&[])))],
        Scheme::Stripe => {
            let tag = tag(&[timestamp.as_bytes(), b"."]);
            vec![(header, format!("t={timestamp},v1={}", hex::encode(tag)))]
        }
        Scheme::StandardWebhooks => {
            let tag = tag(&[id.as_bytes(), b".", timestamp.as_bytes(), b"."]);
            vec![
                (STANDARD_ID.to_owned(), id.to_owned()),
                (STANDARD_TIMESTAMP.to_owned(), timestamp),
                (header, format!("v1,{}", BASE64.encode(tag))),
            ]
        }
    }
}

/// The keys worth trying, with their positions in `keys`: empty values are never keys, and a
/// Standard Webhooks `whsec_` value that is not base64 is skipped.
fn usable_keys<'a>(scheme: Scheme, keys: &[Key<'a>]) -> Vec<(usize, Cow<'a, [u8]>)> {
    keys.iter()
        .enumerate()
        .filter_map(|(position, key)| Some((position, derive_key(scheme, key.secret)?)))
        .collect()
}

/// The HMAC key a stored value stands for, or `None` when it must not be used.
fn derive_key(scheme: Scheme, secret: &[u8]) -> Option<Cow<'_, [u8]>> {
    let key = match (scheme, secret.strip_prefix(WHSEC_PREFIX)) {
        (Scheme::StandardWebhooks, Some(encoded)) => Cow::Owned(BASE64.decode(encoded).ok()?),
        _ => Cow::Borrowed(secret),
    };
    (!key.is_empty()).then_some(key)
}

/// Tries every key against every candidate without stopping at a match, and returns the
/// position of the first key that matched. The position is selected in constant time, so the
/// time taken does not depend on which key matched.
fn first_matching_key(
    keys: &[(usize, Cow<'_, [u8]>)],
    request: &SignedRequest<'_>,
    body: &[u8],
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut position = 0u64;
    for (index, key) in keys {
        let Some(tag) = hmac_sha256(key, &request.prefix, body) else {
            continue;
        };
        let hit = request
            .candidates
            .iter()
            .fold(Choice::from(0), |hit, candidate| hit | tag.ct_eq(candidate));
        position.conditional_assign(&(*index as u64), hit & !found);
        found |= hit;
    }
    bool::from(found).then_some(position as usize)
}

fn hmac_sha256(key: &[u8], prefix: &[&[u8]], body: &[u8]) -> Option<Tag> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    for part in prefix {
        mac.update(part);
    }
    mac.update(body);
    Some(mac.finalize().into_bytes().into())
}

fn check_window(timestamp: i64, p: &VerifyParams<'_>) -> Result<(), SignatureError> {
    let skew = p.now_unix.abs_diff(timestamp);
    if skew <= p.tolerance_secs {
        Ok(())
    } else if timestamp < p.now_unix {
        Err(SignatureError::StaleTimestamp {
            age_secs: skew,
            tolerance_secs: p.tolerance_secs,
        })
    } else {
        Err(SignatureError::FutureTimestamp {
            ahead_secs: skew,
            tolerance_secs: p.tolerance_secs,
        })
    }
}

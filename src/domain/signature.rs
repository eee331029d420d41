//! Webhook signature verification: one verifier per scheme of SPEC §5 (plain HMAC, GitHub, Slack,
//! LINE, Stripe, Standard Webhooks) and the signer that produces what each platform would send.
//! This module owns the byte-exact rules of every platform (which header carries what, which
//! string is signed, how the digest is spelled) so that the webhook server only routes and
//! answers. It is pure: headers arrive through the [`Headers`] trait instead of an HTTP type and
//! the clock arrives as `now_unix`, which lets the tests pin each rule to the vectors the
//! platforms publish. Every usable key is tried (multi-key rotation), comparisons are constant
//! time, and no error message or `Debug` output ever contains a key or a signature.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

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

/// The parts of a request that verification needs, read from its headers.
struct SignedRequest<'h> {
    /// What the platform signed before the body, in order; unused slots are empty.
    prefix: [&'h [u8]; 4],
    /// Every well-formed signature the request carries in the scheme's current version.
    candidates: Vec<Tag>,
    /// The signed timestamp, for the timestamped schemes.
    timestamp: Option<i64>,
    /// The delivery id, when the scheme has one.
    delivery_id: Option<String>,
}

impl<'h> SignedRequest<'h> {
    fn parse(p: &VerifyParams<'_>, headers: &'h dyn Headers) -> Result<Self, SignatureError> {
        let name = p.scheme.signature_header(p.signature_header);
        let value = required(headers, name)?;
        let request = match p.scheme {
            Scheme::HmacSha256 => {
                let digits = strip_prefix_ignore_case(value, "sha256=").unwrap_or(value);
                let tag = decode_hex(digits).ok_or_else(|| malformed(name, "expected hex"))?;
                SignedRequest::unprefixed(tag)
            }
            Scheme::Github => {
                let digits = value
                    .strip_prefix("sha256=")
                    .ok_or_else(|| malformed(name, "expected sha256=<hex>"))?;
                let tag = decode_hex(digits).ok_or_else(|| malformed(name, "expected hex"))?;
                SignedRequest {
                    delivery_id: optional(headers, GITHUB_DELIVERY).map(str::to_owned),
                    ..SignedRequest::unprefixed(tag)
                }
            }
            Scheme::Slack => {
                let digits = value
                    .strip_prefix("v0=")
                    .ok_or_else(|| malformed(name, "expected v0=<hex>"))?;
                let tag = decode_hex(digits).ok_or_else(|| malformed(name, "expected hex"))?;
                let (text, timestamp) = timestamp_header(headers, SLACK_TIMESTAMP)?;
                SignedRequest {
                    prefix: [b"v0:", text.as_bytes(), b":", b""],
                    candidates: vec![tag],
                    timestamp: Some(timestamp),
                    delivery_id: None,
                }
            }
            Scheme::Line => {
                let tag = decode_base64(value).ok_or_else(|| malformed(name, "expected base64"))?;
                SignedRequest::unprefixed(tag)
            }
            Scheme::Stripe => parse_stripe(name, value)?,
            Scheme::StandardWebhooks => {
                let id = required(headers, STANDARD_ID)?;
                let (text, timestamp) = timestamp_header(headers, STANDARD_TIMESTAMP)?;
                let mut versioned = false;
                let mut candidates = Vec::new();
                for entry in value.split_ascii_whitespace() {
                    if let Some(encoded) = entry.strip_prefix("v1,") {
                        versioned = true;
                        candidates.extend(decode_base64(encoded));
                    }
                }
                if !versioned {
                    return Err(malformed(name, "no v1 signature"));
                }
                if candidates.is_empty() {
                    return Err(malformed(name, "no v1 signature is base64 of 32 bytes"));
                }
                SignedRequest {
                    prefix: [id.as_bytes(), b".", text.as_bytes(), b"."],
                    candidates,
                    timestamp: Some(timestamp),
                    delivery_id: Some(id.to_owned()),
                }
            }
        };
        Ok(request)
    }

    /// A request whose signature covers the body alone.
    fn unprefixed(tag: Tag) -> Self {
        SignedRequest {
            prefix: [b""; 4],
            candidates: vec![tag],
            timestamp: None,
            delivery_id: None,
        }
    }
}

/// Reads `t=…,v1=…[,v1=…]`, ignoring other versions such as `v0` and items without `=`.
fn parse_stripe<'h>(name: &str, value: &'h str) -> Result<SignedRequest<'h>, SignatureError> {
    const HEADER: &str = "Stripe-Signature";
    let mut text = None;
    let mut versioned = false;
    let mut candidates = Vec::new();
    for (key, item) in value
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
    {
        match key {
            "t" if text.replace(item).is_some() => {
                return Err(malformed(name, "more than one t= timestamp"));
            }
            "v1" => {
                versioned = true;
                candidates.extend(decode_hex(item));
            }
            _ => {}
        }
    }
    let text = text.ok_or(SignatureError::MissingTimestamp { header: HEADER })?;
    let timestamp =
        parse_timestamp(text).ok_or(SignatureError::MalformedTimestamp { header: HEADER })?;
    if !versioned {
        return Err(malformed(name, "no v1= signature"));
    }
    if candidates.is_empty() {
        return Err(malformed(name, "no v1= signature is 64 hex digits"));
    }
    Ok(SignedRequest {
        prefix: [text.as_bytes(), b".", b"", b""],
        candidates,
        timestamp: Some(timestamp),
        delivery_id: None,
    })
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

/// The trimmed text of a required header.
fn required<'h>(headers: &'h dyn Headers, name: &str) -> Result<&'h str, SignatureError> {
    let raw = headers
        .get(name)
        .ok_or_else(|| SignatureError::MissingHeader {
            header: name.to_owned(),
        })?;
    let text = std::str::from_utf8(raw)
        .map_err(|_| malformed(name, "not valid UTF-8"))?
        .trim();
    if text.is_empty() {
        return Err(malformed(name, "empty"));
    }
    Ok(text)
}

/// The trimmed text of an optional header, when it is present, UTF-8 and not empty.
fn optional<'h>(headers: &'h dyn Headers, name: &str) -> Option<&'h str> {
    let text = std::str::from_utf8(headers.get(name)?).ok()?.trim();
    (!text.is_empty()).then_some(text)
}

/// A timestamp header as both its signed text and its value.
fn timestamp_header<'h>(
    headers: &'h dyn Headers,
    name: &'static str,
) -> Result<(&'h str, i64), SignatureError> {
    let raw = headers
        .get(name)
        .ok_or(SignatureError::MissingTimestamp { header: name })?;
    let malformed = SignatureError::MalformedTimestamp { header: name };
    let text = std::str::from_utf8(raw)
        .map_err(|_| malformed.clone())?
        .trim();
    let timestamp = parse_timestamp(text).ok_or(malformed)?;
    Ok((text, timestamp))
}

/// Unix seconds as decimal digits only: no sign, no fraction, no spaces.
fn parse_timestamp(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Exactly 64 hex digits, in either case.
fn decode_hex(text: &str) -> Option<Tag> {
    let mut tag = Tag::default();
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

/// Standard padded base64 of exactly 32 bytes.
fn decode_base64(text: &str) -> Option<Tag> {
    if text.len() != TAG_BASE64_LEN {
        return None;
    }
    // The decoder wants room for its estimate (33 bytes here) even though 32 are written.
    let mut buffer = [0u8; TAG_BASE64_LEN / 4 * 3];
    let written = BASE64.decode_slice(text, &mut buffer).ok()?;
    buffer.get(..written)?.try_into().ok()
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn malformed(header: &str, reason: &'static str) -> SignatureError {
    SignatureError::MalformedHeader {
        header: header.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub: docs.github.com, "Validating webhook deliveries", section "Testing the webhook
    // payload validation".
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Slack: api.slack.com/authentication/verifying-requests-from-slack, the worked example (a
    // slash command, so the body is form-encoded).
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: i64 = 1_531_420_618;
    const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIGNATURE: &str =
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    // LINE: line/line-bot-sdk-nodejs, test/validate-signature.spec.ts; the body there is
    // JSON.stringify({ hello: "world" }).
    const LINE_SECRET: &str = "test_secret";
    const LINE_BODY: &[u8] = br#"{"hello":"world"}"#;
    const LINE_SIGNATURE: &str = "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM=";

    // Stripe: stripe/stripe-dotnet, src/StripeTests/Services/Events/EventUtilityTest.cs, over the
    // fixture src/StripeTests/Resources/event_test_signature.json (484 bytes with its final
    // newline). Its header also carries a v0 signature, which must be ignored.
    const STRIPE_SECRET: &str = "webhook_secret";
    const STRIPE_TS: i64 = 1_533_204_620;
    const STRIPE_BODY: &[u8] = concat!(
        "{\n",
        "  \"id\": \"evt_123\",\n",
        "  \"object\": \"event\",\n",
        "  \"account\": \"acct_123\",\n",
        "  \"api_version\": \"2017-05-25\",\n",
        "  \"created\": 1533204620,\n",
        "  \"data\": {\n",
        "    \"object\": {\n",
        "      \"id\": \"cus_123\",\n",
        "      \"object\": \"customer\",\n",
        "      \"created\": 123456789,\n",
        "      \"email\": \"test@stripe.com\",\n",
        "      \"livemode\": false,\n",
        "      \"metadata\": {}\n",
        "    }\n",
        "  },\n",
        "  \"livemode\": false,\n",
        "  \"pending_webhooks\": 1,\n",
        "  \"request\": {\n",
        "    \"id\": \"req_123\",\n",
        "    \"idempotency_key\": \"idempotency-key-123\"\n",
        "  },\n",
        "  \"type\": \"customer.created\"\n",
        "}\n",
    )
    .as_bytes();
    const STRIPE_V1: &str = "2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
    const STRIPE_V0: &str = "63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

    // Standard Webhooks: standard-webhooks/standard-webhooks,
    // libraries/javascript/src/webhook.test.ts, test "sign function works" (the same vector is in
    // Svix's manual-verification docs).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A well-formed v1 signature by some other key, from the same test file.
    const SW_OTHER: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    type Outcome = Result<Verified, SignatureError>;

    /// One request, the keys it is verified against, and the outcome it must have.
    #[derive(Clone)]
    struct Case {
        what: String,
        params: VerifyParams<'static>,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        secrets: Vec<&'static str>,
        want: Outcome,
    }

    impl Case {
        fn new(
            scheme: Scheme,
            headers: &[(&str, &str)],
            body: &[u8],
            secret: &'static str,
        ) -> Self {
            Case {
                what: scheme.to_string(),
                params: VerifyParams::new(scheme, 0),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                body: body.to_vec(),
                secrets: vec![secret],
                want: ok(0, None, None),
            }
        }

        fn named(mut self, what: impl fmt::Display) -> Self {
            self.what = format!("{}: {what}", self.params.scheme);
            self
        }

        fn now(mut self, now_unix: i64) -> Self {
            self.params.now_unix = now_unix;
            self
        }

        fn tolerance(mut self, tolerance_secs: u64) -> Self {
            self.params.tolerance_secs = tolerance_secs;
            self
        }

        fn configured(mut self, signature_header: &'static str) -> Self {
            self.params.signature_header = Some(signature_header);
            self
        }

        /// Sets header `name` to `value`, replacing any header of that name.
        fn set(self, name: &str, value: impl Into<String>) -> Self {
            let mut case = self.unset(name);
            case.headers.push((name.to_owned(), value.into()));
            case
        }

        fn unset(mut self, name: &str) -> Self {
            self.headers
                .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
            self
        }

        fn body(mut self, body: &[u8]) -> Self {
            self.body = body.to_vec();
            self
        }

        fn keys(mut self, secrets: &[&'static str]) -> Self {
            self.secrets = secrets.to_vec();
            self
        }

        fn want(mut self, want: Outcome) -> Self {
            self.want = want;
            self
        }
    }

    /// Verifies the case's request and compares the outcome with its `want`. Every refusal is
    /// also checked for leaks: its message and `Debug` must not contain a key, nor any header
    /// value long enough to be a signature.
    fn check(case: Case) {
        let names: Vec<String> = (0..case.secrets.len())
            .map(|i| format!("key-{i}"))
            .collect();
        let keys: Vec<Key<'_>> = names
            .iter()
            .zip(&case.secrets)
            .map(|(name, secret)| Key {
                name,
                secret: secret.as_bytes(),
            })
            .collect();
        let got = verify(&case.params, &case.headers, &case.body, &keys);
        let what = &case.what;
        assert_eq!(got, case.want, "{what}");
        if let Err(err) = got {
            let shown = format!("{err} {err:?}");
            for secret in case.secrets.iter().filter(|secret| secret.len() >= 4) {
                assert!(
                    !shown.contains(secret),
                    "{what}: the error shows a key: {shown}"
                );
            }
            for (_, value) in case.headers.iter().filter(|(_, value)| value.len() >= 16) {
                assert!(
                    !shown.contains(value),
                    "{what}: the error shows a header value: {shown}"
                );
            }
        }
    }

    fn ok(key_index: usize, delivery_id: Option<&str>, timestamp: Option<i64>) -> Outcome {
        Ok(Verified {
            key_index,
            delivery_id: delivery_id.map(str::to_owned),
            timestamp,
        })
    }

    fn no_match(tried: usize) -> Outcome {
        Err(SignatureError::NoKeyMatched { tried })
    }

    fn missing(header: &str) -> Outcome {
        Err(SignatureError::MissingHeader {
            header: header.to_owned(),
        })
    }

    fn bad(header: &str, reason: &'static str) -> Outcome {
        Err(malformed(header, reason))
    }

    fn missing_timestamp(header: &'static str) -> Outcome {
        Err(SignatureError::MissingTimestamp { header })
    }

    fn bad_timestamp(header: &'static str) -> Outcome {
        Err(SignatureError::MalformedTimestamp { header })
    }

    /// The request a platform published, verified at a moment inside its window.
    fn published(scheme: Scheme) -> Case {
        match scheme {
            // No platform publishes a plain vector; GitHub's is the same HMAC, spelled bare.
            Scheme::HmacSha256 => Case::new(
                scheme,
                &[("X-Webhook-Signature", GITHUB_HEX)],
                GITHUB_BODY,
                GITHUB_SECRET,
            ),
            Scheme::Github => Case::new(
                scheme,
                &[
                    ("X-Hub-Signature-256", GITHUB_SIGNATURE),
                    ("X-GitHub-Delivery", "d-1"),
                ],
                GITHUB_BODY,
                GITHUB_SECRET,
            )
            .want(ok(0, Some("d-1"), None)),
            Scheme::Slack => Case::new(
                scheme,
                &[
                    ("X-Slack-Request-Timestamp", "1531420618"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ],
                SLACK_BODY,
                SLACK_SECRET,
            )
            .now(SLACK_TS + 60)
            .want(ok(0, None, Some(SLACK_TS))),
            Scheme::Line => Case::new(
                scheme,
                &[("X-Line-Signature", LINE_SIGNATURE)],
                LINE_BODY,
                LINE_SECRET,
            ),
            Scheme::Stripe => Case::new(
                scheme,
                &[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},v1={STRIPE_V1},v0={STRIPE_V0}"),
                )],
                STRIPE_BODY,
                STRIPE_SECRET,
            )
            .now(STRIPE_TS + 100)
            .want(ok(0, None, Some(STRIPE_TS))),
            Scheme::StandardWebhooks => Case::new(
                scheme,
                &[
                    ("webhook-id", SW_ID),
                    ("webhook-timestamp", "1614265330"),
                    ("webhook-signature", SW_SIGNATURE),
                ],
                SW_BODY,
                SW_SECRET,
            )
            .now(SW_TS)
            .want(ok(0, Some(SW_ID), Some(SW_TS))),
        }
    }

    /// A request signed by [`sign`] with `secret` at `now`, verified at the same moment.
    fn signed(
        scheme: Scheme,
        configured: Option<&'static str>,
        secret: &'static str,
        now: i64,
    ) -> Case {
        let body = br#"{"type":"event_callback","event_id":"Ev1"}"#;
        let mut case = Case::new(scheme, &[], body, secret).now(now);
        case.headers = sign(scheme, configured, secret.as_bytes(), body, now, "evt_42");
        case.params.signature_header = configured;
        let delivery_id = match scheme {
            Scheme::Github | Scheme::StandardWebhooks => Some("evt_42"),
            Scheme::HmacSha256 | Scheme::Slack | Scheme::Line | Scheme::Stripe => None,
        };
        case.want(ok(0, delivery_id, scheme.is_timestamped().then_some(now)))
    }

    #[test]
    fn published_vectors_verify() {
        for scheme in Scheme::ALL {
            check(published(scheme).named("published vector"));
        }
    }

    #[test]
    fn published_vectors_refuse_a_wrong_key_a_flipped_byte_and_a_missing_header() {
        for scheme in Scheme::ALL {
            let v = published(scheme);
            check(
                v.clone()
                    .named("wrong key")
                    .keys(&["not the secret"])
                    .want(no_match(1)),
            );
            for position in [0, v.body.len() / 2, v.body.len() - 1] {
                let mut body = v.body.clone();
                body[position] ^= 0x01;
                let what = format!("byte {position} flipped");
                check(v.clone().named(what).body(&body).want(no_match(1)));
            }
            let header = scheme.default_header();
            check(
                v.clone()
                    .named("no signature header")
                    .unset(header)
                    .want(missing(header)),
            );
        }
    }

    #[test]
    fn signer_reproduces_published_vectors() {
        for scheme in Scheme::ALL {
            let v = published(scheme);
            let header = scheme.default_header();
            let want = match scheme {
                Scheme::Stripe => format!("t={STRIPE_TS},v1={STRIPE_V1}"),
                _ => {
                    String::from_utf8_lossy(v.headers.get(header).unwrap_or_default()).into_owned()
                }
            };
            let timestamp = v.want.as_ref().ok().and_then(|verified| verified.timestamp);
            let id = if scheme == Scheme::StandardWebhooks {
                SW_ID
            } else {
                ""
            };
            let secret = v.secrets[0].as_bytes();
            let signed = sign(scheme, None, secret, &v.body, timestamp.unwrap_or(0), id);
            let got = signed.get(header).map(String::from_utf8_lossy);
            assert_eq!(got.as_deref(), Some(want.as_str()), "{scheme}");
        }
    }

    #[test]
    fn header_names_and_spellings() {
        use Scheme::{Github, HmacSha256, Line, Slack};
        let cases = [
            published(HmacSha256)
                .named("sha256= prefix")
                .set("X-Webhook-Signature", GITHUB_SIGNATURE),
            published(HmacSha256)
                .named("upper-case prefix and hex")
                .set(
                    "X-Webhook-Signature",
                    format!("SHA256={}", GITHUB_HEX.to_uppercase()),
                ),
            published(HmacSha256)
                .named("lower-case name, padded value")
                .unset("X-Webhook-Signature")
                .set("x-webhook-signature", format!(" {GITHUB_HEX} ")),
            published(HmacSha256)
                .named("configured header")
                .configured("X-Signature")
                .unset("X-Webhook-Signature")
                .set("x-signature", GITHUB_HEX),
            published(HmacSha256)
                .named("configured header absent")
                .configured("X-Signature")
                .want(missing("X-Signature")),
            published(Github)
                .named("configured header")
                .configured("X-Hub-Signature-256-Relayed")
                .unset("X-Hub-Signature-256")
                .set("X-Hub-Signature-256-Relayed", GITHUB_SIGNATURE),
            published(Github)
                .named("lower-case names")
                .unset("X-Hub-Signature-256")
                .set("x-hub-signature-256", GITHUB_SIGNATURE)
                .unset("X-GitHub-Delivery")
                .set("x-github-delivery", "d-1"),
            published(Github)
                .named("no delivery id")
                .unset("X-GitHub-Delivery")
                .want(ok(0, None, None)),
            published(Slack)
                .named("a configured header is ignored")
                .configured("X-Other"),
            published(Line)
                .named("configured header")
                .configured("X-Line-Signature-Relayed")
                .unset("X-Line-Signature")
                .set("X-Line-Signature-Relayed", LINE_SIGNATURE),
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn timestamped_schemes_enforce_the_window_both_ways() {
        let at = 1_700_000_000;
        for scheme in Scheme::ALL.into_iter().filter(|s| s.is_timestamped()) {
            let v = signed(scheme, None, "window-secret", at);
            let stale = |age_secs, tolerance_secs| {
                Err(SignatureError::StaleTimestamp {
                    age_secs,
                    tolerance_secs,
                })
            };
            let future = |ahead_secs, tolerance_secs| {
                Err(SignatureError::FutureTimestamp {
                    ahead_secs,
                    tolerance_secs,
                })
            };
            let cases = [
                v.clone().named("at the signing second"),
                v.clone().named("at the end of the window").now(at + 300),
                v.clone().named("at the start of the window").now(at - 300),
                v.clone()
                    .named("a second stale")
                    .now(at + 301)
                    .want(stale(301, 300)),
                v.clone()
                    .named("a second in the future")
                    .now(at - 301)
                    .want(future(301, 300)),
                v.clone()
                    .named("a minute stale, 10s tolerance")
                    .now(at + 60)
                    .tolerance(10)
                    .want(stale(60, 10)),
                v.clone()
                    .named("now at i64::MIN")
                    .now(i64::MIN)
                    .want(future(at.abs_diff(i64::MIN), 300)),
                // A forgery is reported as a forgery, whatever its timestamp says.
                v.clone()
                    .named("stale and forged")
                    .now(at + 3600)
                    .keys(&["other"])
                    .want(no_match(1)),
            ];
            for case in cases {
                check(case);
            }
        }
    }

    #[test]
    fn malformed_headers_are_named_and_refused() {
        use Scheme::{Github, HmacSha256, Line, Slack, StandardWebhooks, Stripe};
        let (plain, slack, stripe, sw) = (
            "X-Webhook-Signature",
            "X-Slack-Signature",
            "Stripe-Signature",
            "webhook-signature",
        );
        let slack_ts = "X-Slack-Request-Timestamp";
        let no_v1 = "no v1 signature is base64 of 32 bytes";
        let cases = [
            published(HmacSha256)
                .named("not hex")
                .set(plain, "zz".repeat(32))
                .want(bad(plain, "expected hex")),
            published(HmacSha256)
                .named("31 bytes")
                .set(plain, &GITHUB_HEX[2..])
                .want(bad(plain, "expected hex")),
            published(HmacSha256)
                .named("blank")
                .set(plain, "  ")
                .want(bad(plain, "empty")),
            published(Github)
                .named("bare hex")
                .set("X-Hub-Signature-256", GITHUB_HEX)
                .want(bad("X-Hub-Signature-256", "expected sha256=<hex>")),
            published(Github)
                .named("sha1= prefix")
                .set("X-Hub-Signature-256", format!("sha1={GITHUB_HEX}"))
                .want(bad("X-Hub-Signature-256", "expected sha256=<hex>")),
            published(Github)
                .named("bad hex")
                .set("X-Hub-Signature-256", "sha256=xyz")
                .want(bad("X-Hub-Signature-256", "expected hex")),
            published(Slack)
                .named("no v0=")
                .set(slack, &SLACK_SIGNATURE[3..])
                .want(bad(slack, "expected v0=<hex>")),
            published(Slack)
                .named("bad hex")
                .set(slack, "v0=0g")
                .want(bad(slack, "expected hex")),
            published(Slack)
                .named("no timestamp")
                .unset(slack_ts)
                .want(missing_timestamp(slack_ts)),
            published(Slack)
                .named("fractional timestamp")
                .set(slack_ts, "1531420618.5")
                .want(bad_timestamp(slack_ts)),
            published(Slack)
                .named("signed timestamp")
                .set(slack_ts, "+1531420618")
                .want(bad_timestamp(slack_ts)),
            published(Slack)
                .named("timestamp beyond i64")
                .set(slack_ts, "9".repeat(20))
                .want(bad_timestamp(slack_ts)),
            published(Line)
                .named("not base64")
                .set(
                    "X-Line-Signature",
                    "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM!",
                )
                .want(bad("X-Line-Signature", "expected base64")),
            published(Line)
                .named("31 bytes")
                .set("X-Line-Signature", BASE64.encode([7u8; 31]))
                .want(bad("X-Line-Signature", "expected base64")),
            published(Line)
                .named("hex instead of base64")
                .set("X-Line-Signature", GITHUB_HEX)
                .want(bad("X-Line-Signature", "expected base64")),
            published(Stripe)
                .named("no t=")
                .set(stripe, format!("v1={STRIPE_V1}"))
                .want(missing_timestamp(stripe)),
            published(Stripe)
                .named("t= not a number")
                .set(stripe, format!("t=yesterday,v1={STRIPE_V1}"))
                .want(bad_timestamp(stripe)),
            published(Stripe)
                .named("two t=")
                .set(stripe, format!("t={STRIPE_TS},t=1,v1={STRIPE_V1}"))
                .want(bad(stripe, "more than one t= timestamp")),
            published(Stripe)
                .named("only v0")
                .set(stripe, format!("t={STRIPE_TS},v0={STRIPE_V0}"))
                .want(bad(stripe, "no v1= signature")),
            published(Stripe)
                .named("v1 not hex")
                .set(stripe, format!("t={STRIPE_TS},v1=invalid"))
                .want(bad(stripe, "no v1= signature is 64 hex digits")),
            published(StandardWebhooks)
                .named("no webhook-id")
                .unset("webhook-id")
                .want(missing("webhook-id")),
            published(StandardWebhooks)
                .named("blank webhook-id")
                .set("webhook-id", "")
                .want(bad("webhook-id", "empty")),
            published(StandardWebhooks)
                .named("no webhook-timestamp")
                .unset("webhook-timestamp")
                .want(missing_timestamp("webhook-timestamp")),
            published(StandardWebhooks)
                .named("webhook-timestamp not a number")
                .set("webhook-timestamp", "hello")
                .want(bad_timestamp("webhook-timestamp")),
            // From the Standard Webhooks tests: base64, but of 18 bytes.
            published(StandardWebhooks)
                .named("short signature")
                .set(sw, "v1,dawfeoifkpqwoekfpqoekf")
                .want(bad(sw, no_v1)),
            published(StandardWebhooks)
                .named("empty v1")
                .set(sw, "v1,")
                .want(bad(sw, no_v1)),
            published(StandardWebhooks)
                .named("bad base64")
                .set(sw, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O*=")
                .want(bad(sw, no_v1)),
            published(StandardWebhooks)
                .named("only other versions")
                .set(sw, format!("v1a,{0} v2,{0}", &SW_SIGNATURE[3..]))
                .want(bad(sw, "no v1 signature")),
            published(StandardWebhooks)
                .named("commas between signatures")
                .set(sw, format!("{SW_OTHER},{SW_SIGNATURE}"))
                .want(bad(sw, no_v1)),
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn header_values_that_are_not_utf8_are_malformed() {
        let headers: [(&str, &[u8]); 1] = [("X-Line-Signature", b"t7Hn4ZDHqs6e\xff")];
        let keys = [Key {
            name: "k",
            secret: LINE_SECRET.as_bytes(),
        }];
        let got = verify(
            &VerifyParams::new(Scheme::Line, 0),
            &headers,
            LINE_BODY,
            &keys,
        );
        assert_eq!(got, bad("X-Line-Signature", "not valid UTF-8"));
    }

    #[test]
    fn several_signatures_and_several_keys() {
        use Scheme::{Github, StandardWebhooks, Stripe};
        let (stripe, sw) = ("Stripe-Signature", "webhook-signature");
        let zeros = "0".repeat(64);
        let sw_key_2 = "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=";
        let sw_ok = |key_index| ok(key_index, Some(SW_ID), Some(SW_TS));
        let cases = [
            published(Stripe)
                .named("the second v1 is right")
                .set(stripe, format!("t={STRIPE_TS},v1={zeros},v1={STRIPE_V1}")),
            published(Stripe)
                .named("a malformed v1 beside a right one, with spaces")
                .set(
                    stripe,
                    format!("t={STRIPE_TS}, v1=invalid, v1={STRIPE_V1}, v0={STRIPE_V0}"),
                ),
            published(Stripe)
                .named("several wrong v1")
                .set(stripe, format!("t={STRIPE_TS},v1={zeros},v1={STRIPE_V0}"))
                .want(no_match(1)),
            published(Stripe)
                .named("a right signature under v0 is not accepted")
                .set(stripe, format!("t={STRIPE_TS},v1={zeros},v0={STRIPE_V1}"))
                .want(no_match(1)),
            // The list of the Standard Webhooks tests, with the published signature inside.
            published(StandardWebhooks)
                .named("one right among several")
                .set(
                    sw,
                    format!("{SW_OTHER} v2,{} {SW_SIGNATURE} {SW_OTHER}", &SW_OTHER[3..]),
                ),
            published(StandardWebhooks)
                .named("several wrong")
                .set(sw, format!("{SW_OTHER}  {SW_OTHER}"))
                .want(no_match(1)),
            published(StandardWebhooks)
                .named("the second key matches")
                .keys(&[sw_key_2, SW_SECRET])
                .want(sw_ok(1)),
            published(StandardWebhooks)
                .named("an undecodable key is skipped")
                .keys(&["whsec_not*base64", SW_SECRET])
                .want(sw_ok(1)),
            published(StandardWebhooks)
                .named("only unusable keys")
                .keys(&["whsec_not*base64", "whsec_", ""])
                .want(Err(SignatureError::NoKeyConfigured)),
            // Some libraries decode a key without the prefix too; here it is raw bytes.
            published(StandardWebhooks)
                .named("a key without whsec_ is raw bytes")
                .keys(&[&SW_SECRET[6..]])
                .want(no_match(1)),
            published(Github)
                .named("the second key matches")
                .keys(&["old", GITHUB_SECRET])
                .want(ok(1, Some("d-1"), None)),
            published(Github)
                .named("the third key matches")
                .keys(&["older", "old", GITHUB_SECRET])
                .want(ok(2, Some("d-1"), None)),
            published(Github)
                .named("the first of two matching keys is reported")
                .keys(&["old", GITHUB_SECRET, GITHUB_SECRET])
                .want(ok(1, Some("d-1"), None)),
            published(Github)
                .named("an empty key is skipped but keeps its index")
                .keys(&["", GITHUB_SECRET])
                .want(ok(1, Some("d-1"), None)),
            published(Github)
                .named("two wrong keys")
                .keys(&["old", "older"])
                .want(no_match(2)),
            published(Github)
                .named("empty keys are not counted")
                .keys(&["", "old", ""])
                .want(no_match(1)),
            published(Github)
                .named("all keys empty")
                .keys(&["", ""])
                .want(Err(SignatureError::NoKeyConfigured)),
            published(Github)
                .named("no keys")
                .keys(&[])
                .want(Err(SignatureError::NoKeyConfigured)),
            published(Github)
                .named("no key configured outranks a missing header")
                .unset("X-Hub-Signature-256")
                .keys(&[""])
                .want(Err(SignatureError::NoKeyConfigured)),
        ];
        for case in cases {
            check(case);
        }
    }

    #[test]
    fn an_empty_secret_is_never_a_key_even_when_it_signed_the_request() {
        for scheme in Scheme::ALL {
            let v = signed(scheme, None, "", 1_700_000_000);
            check(
                v.clone()
                    .named("only the empty key")
                    .want(Err(SignatureError::NoKeyConfigured)),
            );
            check(
                v.named("the empty key and another")
                    .keys(&["", "other"])
                    .want(no_match(1)),
            );
        }
        // "whsec_" decodes to nothing, so it is empty too.
        let v = signed(Scheme::StandardWebhooks, None, "whsec_", 1_700_000_000);
        check(
            v.named("whsec_ alone")
                .want(Err(SignatureError::NoKeyConfigured)),
        );
    }

    #[test]
    fn sign_then_verify_round_trips_for_every_scheme() {
        let now = 1_700_000_000;
        for scheme in Scheme::ALL {
            let secret = match scheme {
                Scheme::StandardWebhooks => "whsec_c2VjcmV0LWZvci1yb3VuZC10cmlwcy0xMjM0",
                _ => "secret-for-round-trips",
            };
            for configured in [None, Some("X-Relayed-Signature")] {
                let v = signed(scheme, configured, secret, now);
                let verified_with_second_key =
                    v.want.clone().map(|w| Verified { key_index: 1, ..w });
                check(
                    v.clone()
                        .named(format!("header {configured:?}"))
                        .now(now + 5),
                );
                check(
                    v.named(format!("header {configured:?}, second key"))
                        .keys(&["previous-secret", secret])
                        .want(verified_with_second_key),
                );
            }
        }
    }

    #[test]
    fn scheme_names_parse_and_infer() {
        for scheme in Scheme::ALL {
            assert_eq!(Scheme::parse(scheme.name()), Ok(scheme));
            assert_eq!(scheme.name().parse::<Scheme>(), Ok(scheme));
            assert_eq!(scheme.to_string(), scheme.name());
            assert_eq!(
                Scheme::infer(Some(&scheme.default_header().to_uppercase())),
                scheme
            );
        }
        let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(SCHEME_NAMES, names.join(", "));
        assert_eq!(
            Scheme::parse("GitHub").map_err(|err| err.to_string()),
            Err(
                "unknown signature scheme \"GitHub\": expected one of hmac-sha256, github, slack, \
                 line, stripe, standard-webhooks"
                    .to_owned()
            )
        );
        let inferred = [
            (None, Scheme::HmacSha256),
            (Some("X-Webhook-Signature"), Scheme::HmacSha256),
            (Some("X-Hub-Signature"), Scheme::HmacSha256),
            (Some("x-hub-signature-256"), Scheme::Github),
            (Some("X-SLACK-SIGNATURE"), Scheme::Slack),
            (Some(" x-line-signature "), Scheme::Line),
            (Some("stripe-signature"), Scheme::Stripe),
            (Some("Webhook-Signature"), Scheme::StandardWebhooks),
            (Some("X-Custom"), Scheme::HmacSha256),
        ];
        for (header, want) in inferred {
            assert_eq!(Scheme::infer(header), want, "{header:?}");
        }
        let timestamped: Vec<Scheme> = Scheme::ALL
            .into_iter()
            .filter(|s| s.is_timestamped())
            .collect();
        assert_eq!(
            timestamped,
            [Scheme::Slack, Scheme::Stripe, Scheme::StandardWebhooks]
        );
    }

    #[test]
    fn keys_never_show_their_secret() {
        let key = Key {
            name: "current",
            secret: b"hunter2-super-secret",
        };
        let shown = format!("{key:?}");
        assert!(
            shown.contains("current") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}

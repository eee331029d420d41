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
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Slack: api.slack.com/authentication/verifying-requests-from-slack, the worked example
    // (a slash command, so the body is form-encoded).
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
    // newline). The header also carries a v0 signature, which must be ignored.
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
    // libraries/javascript/src/webhook.test.ts, "sign function works" (the same vector is in
    // Svix's manual-verification docs).
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A well-formed v1 signature by some other key, from the same test file.
    const SW_OTHER: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    /// Verifies one request and compares the outcome with `want`. Every refusal is also checked
    /// for leaks: its message and `Debug` must not contain a key, nor any header value long
    /// enough to be a signature.
    fn check(
        what: &str,
        params: VerifyParams<'_>,
        headers: &[(String, String)],
        body: &[u8],
        secrets: &[&str],
        want: Result<Verified, SignatureError>,
    ) {
        let names: Vec<String> = (0..secrets.len()).map(|i| format!("key-{i}")).collect();
        let keys: Vec<Key<'_>> = names
            .iter()
            .zip(secrets)
            .map(|(name, secret)| Key {
                name,
                secret: secret.as_bytes(),
            })
            .collect();
        let got = verify(&params, &headers, body, &keys);
        assert_eq!(got, want, "{what}");
        if let Err(err) = got {
            let shown = format!("{err} {err:?}");
            for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
                assert!(
                    !shown.contains(secret),
                    "{what}: error shows a key: {shown}"
                );
            }
            for (_, value) in headers.iter().filter(|(_, value)| value.len() >= 16) {
                assert!(
                    !shown.contains(value),
                    "{what}: error shows a header value: {shown}"
                );
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn without(base: &[(String, String)], name: &str) -> Vec<(String, String)> {
        base.iter()
            .filter(|(key, _)| !key.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }

    fn params(scheme: Scheme, now_unix: i64) -> VerifyParams<'static> {
        VerifyParams::new(scheme, now_unix)
    }

    fn ok(
        key_index: usize,
        delivery_id: Option<&str>,
        timestamp: Option<i64>,
    ) -> Result<Verified, SignatureError> {
        Ok(Verified {
            key_index,
            delivery_id: delivery_id.map(str::to_owned),
            timestamp,
        })
    }

    fn malformed_header(header: &str, reason: &'static str) -> Result<Verified, SignatureError> {
        Err(malformed(header, reason))
    }

    fn no_match(tried: usize) -> Result<Verified, SignatureError> {
        Err(SignatureError::NoKeyMatched { tried })
    }

    /// One published vector: what the platform sent and what it proves.
    struct Vector {
        scheme: Scheme,
        headers: Vec<(String, String)>,
        body: &'static [u8],
        secret: &'static str,
        now: i64,
        want: Result<Verified, SignatureError>,
    }

    fn vectors() -> Vec<Vector> {
        let github_hex = GITHUB_SIGNATURE.trim_start_matches("sha256=");
        vec![
            Vector {
                // No platform publishes a plain vector; GitHub's is the same HMAC, spelled bare.
                scheme: Scheme::HmacSha256,
                headers: headers(&[("X-Webhook-Signature", github_hex)]),
                body: GITHUB_BODY,
                secret: GITHUB_SECRET,
                now: 0,
                want: ok(0, None, None),
            },
            Vector {
                scheme: Scheme::Github,
                headers: headers(&[
                    ("X-Hub-Signature-256", GITHUB_SIGNATURE),
                    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ]),
                body: GITHUB_BODY,
                secret: GITHUB_SECRET,
                now: 0,
                want: ok(0, Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"), None),
            },
            Vector {
                scheme: Scheme::Slack,
                headers: headers(&[
                    ("X-Slack-Request-Timestamp", "1531420618"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ]),
                body: SLACK_BODY,
                secret: SLACK_SECRET,
                now: SLACK_TS + 60,
                want: ok(0, None, Some(SLACK_TS)),
            },
            Vector {
                scheme: Scheme::Line,
                headers: headers(&[("X-Line-Signature", LINE_SIGNATURE)]),
                body: LINE_BODY,
                secret: LINE_SECRET,
                now: 0,
                want: ok(0, None, None),
            },
            Vector {
                scheme: Scheme::Stripe,
                headers: headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},v1={STRIPE_V1},v0={STRIPE_V0}"),
                )]),
                body: STRIPE_BODY,
                secret: STRIPE_SECRET,
                now: STRIPE_TS + 100,
                want: ok(0, None, Some(STRIPE_TS)),
            },
            Vector {
                scheme: Scheme::StandardWebhooks,
                headers: headers(&[
                    ("webhook-id", SW_ID),
                    ("webhook-timestamp", "1614265330"),
                    ("webhook-signature", SW_SIGNATURE),
                ]),
                body: SW_BODY,
                secret: SW_SECRET,
                now: SW_TS,
                want: ok(0, Some(SW_ID), Some(SW_TS)),
            },
        ]
    }

    #[test]
    fn published_vectors_verify() {
        for v in vectors() {
            let what = format!("{} published vector", v.scheme);
            check(
                &what,
                params(v.scheme, v.now),
                &v.headers,
                v.body,
                &[v.secret],
                v.want,
            );
        }
    }

    #[test]
    fn published_vectors_refuse_a_wrong_key_a_flipped_byte_and_a_missing_header() {
        for v in vectors() {
            let p = params(v.scheme, v.now);
            let what = |case: &str| format!("{}: {case}", v.scheme);
            check(
                &what("wrong key"),
                p,
                &v.headers,
                v.body,
                &["not the secret"],
                no_match(1),
            );
            for position in [0, v.body.len() / 2, v.body.len() - 1] {
                let mut body = v.body.to_vec();
                body[position] ^= 0x01;
                let case = what(&format!("byte {position} flipped"));
                check(&case, p, &v.headers, &body, &[v.secret], no_match(1));
            }
            let header = v.scheme.default_header();
            let missing = Err(SignatureError::MissingHeader {
                header: header.to_owned(),
            });
            check(
                &what("no signature header"),
                p,
                &without(&v.headers, header),
                v.body,
                &[v.secret],
                missing,
            );
        }
    }

    #[test]
    fn signer_reproduces_published_vectors() {
        let cases: [(Scheme, &str, &[u8], i64, &str, (&str, String)); 6] = [
            (
                Scheme::HmacSha256,
                GITHUB_SECRET,
                GITHUB_BODY,
                0,
                "",
                ("X-Webhook-Signature", GITHUB_SIGNATURE[7..].to_owned()),
            ),
            (
                Scheme::Github,
                GITHUB_SECRET,
                GITHUB_BODY,
                0,
                "",
                ("X-Hub-Signature-256", GITHUB_SIGNATURE.to_owned()),
            ),
            (
                Scheme::Slack,
                SLACK_SECRET,
                SLACK_BODY,
                SLACK_TS,
                "",
                ("X-Slack-Signature", SLACK_SIGNATURE.to_owned()),
            ),
            (
                Scheme::Line,
                LINE_SECRET,
                LINE_BODY,
                0,
                "",
                ("X-Line-Signature", LINE_SIGNATURE.to_owned()),
            ),
            (
                Scheme::Stripe,
                STRIPE_SECRET,
                STRIPE_BODY,
                STRIPE_TS,
                "",
                ("Stripe-Signature", format!("t={STRIPE_TS},v1={STRIPE_V1}")),
            ),
            (
                Scheme::StandardWebhooks,
                SW_SECRET,
                SW_BODY,
                SW_TS,
                SW_ID,
                ("webhook-signature", SW_SIGNATURE.to_owned()),
            ),
        ];
        for (scheme, secret, body, now, id, (header, want)) in cases {
            let signed = sign(scheme, None, secret.as_bytes(), body, now, id);
            let got = <Vec<_> as Headers>::get(&signed, header)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            assert_eq!(got.as_deref(), Some(want.as_str()), "{scheme}");
        }
    }

    #[test]
    fn header_spellings() {
        let github_hex = &GITHUB_SIGNATURE[7..];
        let p = params(Scheme::HmacSha256, 0);
        let cases: [(
            &str,
            VerifyParams<'_>,
            Vec<(String, String)>,
            Result<Verified, SignatureError>,
        ); 9] = [
            (
                "plain: sha256= prefix",
                p,
                headers(&[("X-Webhook-Signature", GITHUB_SIGNATURE)]),
                ok(0, None, None),
            ),
            (
                "plain: upper-case hex and prefix",
                p,
                headers(&[(
                    "X-Webhook-Signature",
                    &format!("SHA256={}", github_hex.to_uppercase()),
                )]),
                ok(0, None, None),
            ),
            (
                "plain: lower-case header name, padded value",
                p,
                headers(&[("x-webhook-signature", &format!(" {github_hex} "))]),
                ok(0, None, None),
            ),
            (
                "plain: configured header",
                VerifyParams {
                    signature_header: Some("X-Signature"),
                    ..p
                },
                headers(&[("x-signature", github_hex)]),
                ok(0, None, None),
            ),
            (
                "plain: configured header absent",
                VerifyParams {
                    signature_header: Some("X-Signature"),
                    ..p
                },
                headers(&[("X-Webhook-Signature", github_hex)]),
                Err(SignatureError::MissingHeader {
                    header: "X-Signature".to_owned(),
                }),
            ),
            (
                "github: configured header",
                VerifyParams {
                    signature_header: Some("X-Hub-Signature-256-Proxied"),
                    ..params(Scheme::Github, 0)
                },
                headers(&[("X-Hub-Signature-256-Proxied", GITHUB_SIGNATURE)]),
                ok(0, None, None),
            ),
            (
                "github: lower-case header names",
                params(Scheme::Github, 0),
                headers(&[
                    ("x-hub-signature-256", GITHUB_SIGNATURE),
                    ("x-github-delivery", "d-1"),
                ]),
                ok(0, Some("d-1"), None),
            ),
            (
                "slack: a configured header is ignored",
                VerifyParams {
                    signature_header: Some("X-Other"),
                    ..params(Scheme::Slack, SLACK_TS)
                },
                headers(&[
                    ("X-Slack-Request-Timestamp", "1531420618"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ]),
                ok(0, None, Some(SLACK_TS)),
            ),
            (
                "line: configured header",
                VerifyParams {
                    signature_header: Some("X-Line-Signature-Relay"),
                    ..params(Scheme::Line, 0)
                },
                headers(&[("X-Line-Signature-Relay", LINE_SIGNATURE)]),
                ok(0, None, None),
            ),
        ];
        for (what, p, h, want) in cases {
            let (body, secret) = if what.starts_with("slack") {
                (SLACK_BODY, SLACK_SECRET)
            } else if what.starts_with("line") {
                (LINE_BODY, LINE_SECRET)
            } else {
                (GITHUB_BODY, GITHUB_SECRET)
            };
            check(what, p, &h, body, &[secret], want);
        }
    }

    #[test]
    fn timestamped_schemes_enforce_the_window_both_ways() {
        let signed_at = 1_700_000_000;
        for scheme in Scheme::ALL.into_iter().filter(|s| s.is_timestamped()) {
            let h = sign(
                scheme,
                None,
                b"window-secret",
                b"{}",
                signed_at,
                "msg_window",
            );
            let id = (scheme == Scheme::StandardWebhooks).then_some("msg_window");
            let cases = [
                (
                    "at the signing second",
                    signed_at,
                    DEFAULT_TOLERANCE_SECS,
                    ok(0, id, Some(signed_at)),
                ),
                (
                    "at the end of the window",
                    signed_at + 300,
                    DEFAULT_TOLERANCE_SECS,
                    ok(0, id, Some(signed_at)),
                ),
                (
                    "at the start of the window",
                    signed_at - 300,
                    DEFAULT_TOLERANCE_SECS,
                    ok(0, id, Some(signed_at)),
                ),
                (
                    "one second stale",
                    signed_at + 301,
                    DEFAULT_TOLERANCE_SECS,
                    Err(SignatureError::StaleTimestamp {
                        age_secs: 301,
                        tolerance_secs: 300,
                    }),
                ),
                (
                    "one second in the future",
                    signed_at - 301,
                    DEFAULT_TOLERANCE_SECS,
                    Err(SignatureError::FutureTimestamp {
                        ahead_secs: 301,
                        tolerance_secs: 300,
                    }),
                ),
                (
                    "an hour stale under a 10s tolerance",
                    signed_at + 3600,
                    10,
                    Err(SignatureError::StaleTimestamp {
                        age_secs: 3600,
                        tolerance_secs: 10,
                    }),
                ),
                (
                    "now far before the epoch",
                    i64::MIN,
                    DEFAULT_TOLERANCE_SECS,
                    Err(SignatureError::FutureTimestamp {
                        ahead_secs: signed_at.abs_diff(i64::MIN),
                        tolerance_secs: 300,
                    }),
                ),
            ];
            for (what, now, tolerance_secs, want) in cases {
                let p = VerifyParams {
                    tolerance_secs,
                    ..params(scheme, now)
                };
                check(
                    &format!("{scheme}: {what}"),
                    p,
                    &h,
                    b"{}",
                    &["window-secret"],
                    want,
                );
            }
            // A forged request is refused as a forgery, whatever its timestamp says.
            check(
                &format!("{scheme}: stale and forged"),
                params(scheme, signed_at + 3600),
                &h,
                b"{}",
                &["other"],
                no_match(1),
            );
        }
    }

    #[test]
    fn malformed_headers_are_named_and_refused() {
        let github_hex = &GITHUB_SIGNATURE[7..];
        let plain = params(Scheme::HmacSha256, 0);
        let github = params(Scheme::Github, 0);
        let slack = params(Scheme::Slack, SLACK_TS);
        let line = params(Scheme::Line, 0);
        let stripe = params(Scheme::Stripe, STRIPE_TS);
        let sw = params(Scheme::StandardWebhooks, SW_TS);
        let slack_ts = ("X-Slack-Request-Timestamp", "1531420618");
        let sw_id = ("webhook-id", SW_ID);
        let sw_ts = ("webhook-timestamp", "1614265330");
        let line_31_bytes = BASE64.encode([7u8; 31]);
        let cases: Vec<(
            &str,
            VerifyParams<'_>,
            Vec<(String, String)>,
            Result<Verified, SignatureError>,
        )> = vec![
            (
                "plain: not hex",
                plain,
                headers(&[("X-Webhook-Signature", &"zz".repeat(32))]),
                malformed_header("X-Webhook-Signature", "expected hex"),
            ),
            (
                "plain: 31 bytes of hex",
                plain,
                headers(&[("X-Webhook-Signature", &github_hex[2..])]),
                malformed_header("X-Webhook-Signature", "expected hex"),
            ),
            (
                "plain: empty",
                plain,
                headers(&[("X-Webhook-Signature", "  ")]),
                malformed_header("X-Webhook-Signature", "empty"),
            ),
            (
                "github: bare hex",
                github,
                headers(&[("X-Hub-Signature-256", github_hex)]),
                malformed_header("X-Hub-Signature-256", "expected sha256=<hex>"),
            ),
            (
                "github: sha1 prefix",
                github,
                headers(&[("X-Hub-Signature-256", &format!("sha1={github_hex}"))]),
                malformed_header("X-Hub-Signature-256", "expected sha256=<hex>"),
            ),
            (
                "github: bad hex",
                github,
                headers(&[("X-Hub-Signature-256", "sha256=xyz")]),
                malformed_header("X-Hub-Signature-256", "expected hex"),
            ),
            (
                "slack: no v0=",
                slack,
                headers(&[slack_ts, ("X-Slack-Signature", &SLACK_SIGNATURE[3..])]),
                malformed_header("X-Slack-Signature", "expected v0=<hex>"),
            ),
            (
                "slack: bad hex",
                slack,
                headers(&[slack_ts, ("X-Slack-Signature", "v0=0g")]),
                malformed_header("X-Slack-Signature", "expected hex"),
            ),
            (
                "slack: no timestamp header",
                slack,
                headers(&[("X-Slack-Signature", SLACK_SIGNATURE)]),
                Err(SignatureError::MissingTimestamp {
                    header: "X-Slack-Request-Timestamp",
                }),
            ),
            (
                "slack: fractional timestamp",
                slack,
                headers(&[
                    ("X-Slack-Request-Timestamp", "1531420618.5"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ]),
                Err(SignatureError::MalformedTimestamp {
                    header: "X-Slack-Request-Timestamp",
                }),
            ),
            (
                "slack: signed timestamp",
                slack,
                headers(&[
                    ("X-Slack-Request-Timestamp", "+1531420618"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ]),
                Err(SignatureError::MalformedTimestamp {
                    header: "X-Slack-Request-Timestamp",
                }),
            ),
            (
                "slack: timestamp beyond i64",
                slack,
                headers(&[
                    ("X-Slack-Request-Timestamp", "99999999999999999999"),
                    ("X-Slack-Signature", SLACK_SIGNATURE),
                ]),
                Err(SignatureError::MalformedTimestamp {
                    header: "X-Slack-Request-Timestamp",
                }),
            ),
            (
                "line: not base64",
                line,
                headers(&[(
                    "X-Line-Signature",
                    "t7Hn4ZDHqs6e+wdvI5TyQIvzie0DmMUmuXEBqyyE/tM!",
                )]),
                malformed_header("X-Line-Signature", "expected base64"),
            ),
            (
                "line: 31 bytes",
                line,
                headers(&[("X-Line-Signature", &line_31_bytes)]),
                malformed_header("X-Line-Signature", "expected base64"),
            ),
            (
                "line: hex instead of base64",
                line,
                headers(&[("X-Line-Signature", github_hex)]),
                malformed_header("X-Line-Signature", "expected base64"),
            ),
            (
                "stripe: no t=",
                stripe,
                headers(&[("Stripe-Signature", &format!("v1={STRIPE_V1}"))]),
                Err(SignatureError::MissingTimestamp {
                    header: "Stripe-Signature",
                }),
            ),
            (
                "stripe: t= not a number",
                stripe,
                headers(&[("Stripe-Signature", &format!("t=yesterday,v1={STRIPE_V1}"))]),
                Err(SignatureError::MalformedTimestamp {
                    header: "Stripe-Signature",
                }),
            ),
            (
                "stripe: two t=",
                stripe,
                headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},t=1,v1={STRIPE_V1}"),
                )]),
                malformed_header("Stripe-Signature", "more than one t= timestamp"),
            ),
            (
                "stripe: only v0",
                stripe,
                headers(&[("Stripe-Signature", &format!("t={STRIPE_TS},v0={STRIPE_V0}"))]),
                malformed_header("Stripe-Signature", "no v1= signature"),
            ),
            (
                "stripe: v1 not hex",
                stripe,
                headers(&[("Stripe-Signature", &format!("t={STRIPE_TS},v1=invalid"))]),
                malformed_header("Stripe-Signature", "no v1= signature is 64 hex digits"),
            ),
            (
                "standard-webhooks: no webhook-id",
                sw,
                headers(&[sw_ts, ("webhook-signature", SW_SIGNATURE)]),
                Err(SignatureError::MissingHeader {
                    header: "webhook-id".to_owned(),
                }),
            ),
            (
                "standard-webhooks: no webhook-timestamp",
                sw,
                headers(&[sw_id, ("webhook-signature", SW_SIGNATURE)]),
                Err(SignatureError::MissingTimestamp {
                    header: "webhook-timestamp",
                }),
            ),
            (
                "standard-webhooks: webhook-timestamp not a number",
                sw,
                headers(&[
                    sw_id,
                    ("webhook-timestamp", "hello"),
                    ("webhook-signature", SW_SIGNATURE),
                ]),
                Err(SignatureError::MalformedTimestamp {
                    header: "webhook-timestamp",
                }),
            ),
            (
                // From the Standard Webhooks tests: base64, but of 18 bytes.
                "standard-webhooks: short signature",
                sw,
                headers(&[
                    sw_id,
                    sw_ts,
                    ("webhook-signature", "v1,dawfeoifkpqwoekfpqoekf"),
                ]),
                malformed_header("webhook-signature", "no v1 signature is base64 of 32 bytes"),
            ),
            (
                "standard-webhooks: empty v1",
                sw,
                headers(&[sw_id, sw_ts, ("webhook-signature", "v1,")]),
                malformed_header("webhook-signature", "no v1 signature is base64 of 32 bytes"),
            ),
            (
                "standard-webhooks: bad base64",
                sw,
                headers(&[
                    sw_id,
                    sw_ts,
                    (
                        "webhook-signature",
                        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O*=",
                    ),
                ]),
                malformed_header("webhook-signature", "no v1 signature is base64 of 32 bytes"),
            ),
            (
                "standard-webhooks: only other versions",
                sw,
                headers(&[
                    sw_id,
                    sw_ts,
                    (
                        "webhook-signature",
                        &format!("v1a,{} v2,{}", &SW_SIGNATURE[3..], &SW_SIGNATURE[3..]),
                    ),
                ]),
                malformed_header("webhook-signature", "no v1 signature"),
            ),
            (
                "standard-webhooks: comma instead of space between signatures",
                sw,
                headers(&[
                    sw_id,
                    sw_ts,
                    ("webhook-signature", &format!("{SW_OTHER},{SW_SIGNATURE}")),
                ]),
                malformed_header("webhook-signature", "no v1 signature is base64 of 32 bytes"),
            ),
        ];
        for (what, p, h, want) in cases {
            let (body, secret) = match p.scheme {
                Scheme::Slack => (SLACK_BODY, SLACK_SECRET),
                Scheme::Line => (LINE_BODY, LINE_SECRET),
                Scheme::Stripe => (STRIPE_BODY, STRIPE_SECRET),
                Scheme::StandardWebhooks => (SW_BODY, SW_SECRET),
                Scheme::HmacSha256 | Scheme::Github => (GITHUB_BODY, GITHUB_SECRET),
            };
            check(what, p, &h, body, &[secret], want);
        }
    }

    #[test]
    fn header_values_that_are_not_utf8_are_malformed() {
        let h: [(&str, &[u8]); 1] = [("X-Line-Signature", b"t7Hn4ZDHqs6e\xff")];
        let got = verify(
            &params(Scheme::Line, 0),
            &h,
            LINE_BODY,
            &[Key {
                name: "k",
                secret: LINE_SECRET.as_bytes(),
            }],
        );
        assert_eq!(got, malformed_header("X-Line-Signature", "not valid UTF-8"));
    }

    #[test]
    fn several_signatures_and_several_keys() {
        let stripe = params(Scheme::Stripe, STRIPE_TS);
        let stripe_wrong = "0".repeat(64);
        let sw = params(Scheme::StandardWebhooks, SW_TS);
        let sw_with = |signature: &str| {
            headers(&[
                ("webhook-id", SW_ID),
                ("webhook-timestamp", "1614265330"),
                ("webhook-signature", signature),
            ])
        };
        let github = params(Scheme::Github, 0);
        let github_h = headers(&[("X-Hub-Signature-256", GITHUB_SIGNATURE)]);
        let stripe_ok = ok(0, None, Some(STRIPE_TS));
        let sw_ok = |key_index| ok(key_index, Some(SW_ID), Some(SW_TS));
        let cases: Vec<(
            &str,
            VerifyParams<'_>,
            Vec<(String, String)>,
            &[u8],
            Vec<&str>,
            Result<Verified, SignatureError>,
        )> = vec![
            (
                "stripe: the second v1 is right",
                stripe,
                headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},v1={stripe_wrong},v1={STRIPE_V1}"),
                )]),
                STRIPE_BODY,
                vec![STRIPE_SECRET],
                stripe_ok.clone(),
            ),
            (
                "stripe: a malformed v1 beside a right one",
                stripe,
                headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS}, v1=invalid, v1={STRIPE_V1}, v0={STRIPE_V0}"),
                )]),
                STRIPE_BODY,
                vec![STRIPE_SECRET],
                stripe_ok,
            ),
            (
                "stripe: several wrong v1",
                stripe,
                headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},v1={stripe_wrong},v1={STRIPE_V0}"),
                )]),
                STRIPE_BODY,
                vec![STRIPE_SECRET],
                no_match(1),
            ),
            (
                "stripe: the v0 alone is never accepted",
                stripe,
                headers(&[(
                    "Stripe-Signature",
                    &format!("t={STRIPE_TS},v1={stripe_wrong},v0={STRIPE_V1}"),
                )]),
                STRIPE_BODY,
                vec![STRIPE_SECRET],
                no_match(1),
            ),
            (
                // The list from the Standard Webhooks tests, with the published signature inside.
                "standard-webhooks: one right among several",
                sw,
                sw_with(&format!(
                    "{SW_OTHER} v2,{} {SW_SIGNATURE} {SW_OTHER}",
                    &SW_OTHER[3..]
                )),
                SW_BODY,
                vec![SW_SECRET],
                sw_ok(0),
            ),
            (
                "standard-webhooks: several wrong",
                sw,
                sw_with(&format!("{SW_OTHER}  {SW_OTHER}")),
                SW_BODY,
                vec![SW_SECRET],
                no_match(1),
            ),
            (
                "standard-webhooks: the second key matches",
                sw,
                sw_with(SW_SIGNATURE),
                SW_BODY,
                vec!["whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=", SW_SECRET],
                sw_ok(1),
            ),
            (
                "standard-webhooks: an undecodable key is skipped",
                sw,
                sw_with(SW_SIGNATURE),
                SW_BODY,
                vec!["whsec_not*base64", SW_SECRET],
                sw_ok(1),
            ),
            (
                "standard-webhooks: only undecodable keys",
                sw,
                sw_with(SW_SIGNATURE),
                SW_BODY,
                vec!["whsec_not*base64", "whsec_"],
                Err(SignatureError::NoKeyConfigured),
            ),
            (
                // Some libraries decode a key without the prefix too; here it is raw bytes.
                "standard-webhooks: a key without whsec_ is raw bytes",
                sw,
                sw_with(SW_SIGNATURE),
                SW_BODY,
                vec![&SW_SECRET[6..]],
                no_match(1),
            ),
            (
                "github: the second key matches",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["old", GITHUB_SECRET],
                ok(1, None, None),
            ),
            (
                "github: the third key matches",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["old", "older", GITHUB_SECRET],
                ok(2, None, None),
            ),
            (
                "github: the first of two matching keys is reported",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["old", GITHUB_SECRET, GITHUB_SECRET],
                ok(1, None, None),
            ),
            (
                "github: an empty key is skipped but keeps its index",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["", GITHUB_SECRET],
                ok(1, None, None),
            ),
            (
                "github: two wrong keys",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["old", "older"],
                no_match(2),
            ),
            (
                "github: empty keys are not counted as tried",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["", "old", ""],
                no_match(1),
            ),
            (
                "github: all keys empty",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec!["", ""],
                Err(SignatureError::NoKeyConfigured),
            ),
            (
                "github: no keys at all",
                github,
                github_h.clone(),
                GITHUB_BODY,
                vec![],
                Err(SignatureError::NoKeyConfigured),
            ),
            (
                "github: no key configured outranks a missing header",
                github,
                vec![],
                GITHUB_BODY,
                vec![""],
                Err(SignatureError::NoKeyConfigured),
            ),
        ];
        for (what, p, h, body, secrets, want) in cases {
            check(what, p, &h, body, &secrets, want);
        }
    }

    #[test]
    fn an_empty_secret_is_never_a_key_even_when_it_signed_the_request() {
        for scheme in Scheme::ALL {
            let h = sign(scheme, None, b"", b"{}", 1_700_000_000, "msg_empty");
            let p = params(scheme, 1_700_000_000);
            check(
                &format!("{scheme}: only the empty key"),
                p,
                &h,
                b"{}",
                &[""],
                Err(SignatureError::NoKeyConfigured),
            );
            check(
                &format!("{scheme}: empty and other"),
                p,
                &h,
                b"{}",
                &["", "other"],
                no_match(1),
            );
        }
        // "whsec_" decodes to nothing, so it is empty too.
        let h = sign(
            Scheme::StandardWebhooks,
            None,
            b"whsec_",
            b"{}",
            1_700_000_000,
            "msg_empty",
        );
        let p = params(Scheme::StandardWebhooks, 1_700_000_000);
        check(
            "standard-webhooks: whsec_ alone",
            p,
            &h,
            b"{}",
            &["whsec_"],
            Err(SignatureError::NoKeyConfigured),
        );
    }

    #[test]
    fn sign_then_verify_round_trips_for_every_scheme() {
        let body = br#"{"type":"event_callback","event_id":"Ev1"}"#;
        let now = 1_700_000_000;
        for scheme in Scheme::ALL {
            let secret = match scheme {
                Scheme::StandardWebhooks => "whsec_c2VjcmV0LWZvci1yb3VuZC10cmlwcy0xMjM0",
                _ => "secret-for-round-trips",
            };
            let delivery_id = match scheme {
                Scheme::Github | Scheme::StandardWebhooks => Some("evt_42"),
                Scheme::HmacSha256 | Scheme::Slack | Scheme::Line | Scheme::Stripe => None,
            };
            let timestamp = scheme.is_timestamped().then_some(now);
            for configured in [None, Some("X-Relayed-Signature")] {
                let h = sign(scheme, configured, secret.as_bytes(), body, now, "evt_42");
                let p = VerifyParams {
                    signature_header: configured,
                    ..params(scheme, now + 5)
                };
                let what = format!("{scheme} signed with header {configured:?}");
                check(
                    &what,
                    p,
                    &h,
                    body,
                    &["previous-secret", secret],
                    ok(1, delivery_id, timestamp),
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
            assert_eq!(Scheme::infer(Some(scheme.default_header())), scheme);
            assert_eq!(
                Scheme::infer(Some(&scheme.default_header().to_uppercase())),
                scheme
            );
        }
        let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(SCHEME_NAMES, names.join(", "));
        let err = Scheme::parse("GitHub").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signature scheme \"GitHub\": expected one of hmac-sha256, github, slack, line, stripe, standard-webhooks"
        );
        let inferred = [
            (None, Scheme::HmacSha256),
            (Some("X-Webhook-Signature"), Scheme::HmacSha256),
            (Some("X-Hub-Signature"), Scheme::HmacSha256),
            (Some("x-hub-signature-256"), Scheme::Github),
            (Some("X-SLACK-SIGNATURE"), Scheme::Slack),
            (Some("x-line-signature"), Scheme::Line),
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
        assert!(shown.contains("current"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

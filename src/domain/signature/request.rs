//! Reading a signed request from its headers: which header carries the signature in each scheme,
//! how the digest is spelled (hex, base64, `t=…,v1=…`, `v1,<base64> …`), the signed timestamp and
//! prefix, and the delivery id. Every refusal names the header and the reason, never its value.

use base64::Engine as _;

use super::{
    BASE64, GITHUB_DELIVERY, Headers, SLACK_TIMESTAMP, STANDARD_ID, STANDARD_TIMESTAMP, Scheme,
    SignatureError, TAG_BASE64_LEN, Tag, VerifyParams,
};

/// The parts of a request that verification needs, read from its headers.
pub(super) struct SignedRequest<'h> {
    /// What the platform signed before the body, in order; unused slots are empty.
    pub(super) prefix: [&'h [u8]; 4],
    /// Every well-formed signature the request carries in the scheme's current version.
    pub(super) candidates: Vec<Tag>,
    /// The signed timestamp, for the timestamped schemes.
    pub(super) timestamp: Option<i64>,
    /// The delivery id, when the scheme has one.
    pub(super) delivery_id: Option<String>,
}

impl<'h> SignedRequest<'h> {
    pub(super) fn parse(
        p: &VerifyParams<'_>,
        headers: &'h dyn Headers,
    ) -> Result<Self, SignatureError> {
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

pub(super) fn malformed(header: &str, reason: &'static str) -> SignatureError {
    SignatureError::MalformedHeader {
        header: header.to_owned(),
        reason,
    }
}

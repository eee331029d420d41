//! Token refresh (SPEC §7, providers `oauth2` and `github-app`), pure: when a token is due, how
//! a failed refresh is retried, and where its expiry is kept. A token is not rotated in stages:
//! the platform hands out a new one and the old one stays valid there until it expires, so a
//! refresh is one commit of the new token (and its expiry, and a rotated refresh token) through
//! the SecretStoreActor. The daemon refreshes a token `refreshBefore` ahead of its expiry; the
//! driver (`src/rotation/tokens.rs`) and the actor that owns the timers
//! (`actors/token_refresh.rs`) perform what is decided here.
//!
//! The expiry lives in the store beside the token, as two companion keys committed with it:
//! `<key>.expires_at` (RFC 3339, or `never` when the platform gave no expiry) and
//! `<key>.issued_at` (when the daemon received the token: the lifetime is the difference). So
//! it survives a restart, a re-apply under the three-way merge keeps it like any key the
//! manifest does not name, and an operator who pastes a token by hand can say when it expires
//! (`orchestrator secret set STORE access_token.expires_at`). A token without a known expiry
//! (no companion key, or no token yet) is refreshed at once, which makes its expiry known.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::manifest::{RotationProvider, RotationSpec, SecretStoreSpec, fingerprint};
use super::retention::Age;

/// The suffix of a token's expiry key: `access_token.expires_at`.
pub const EXPIRES_SUFFIX: &str = ".expires_at";
/// The suffix of the key that says when the daemon received the token.
pub const ISSUED_SUFFIX: &str = ".issued_at";
/// The value of `<key>.expires_at` for a token the platform gave no expiry.
pub const NEVER: &str = "never";

/// Without `refreshBefore`, a token is refreshed this share of its lifetime ahead of expiry…
const DEFAULT_SHARE: f64 = 0.10;
/// …but at least this long ahead…
const MIN_AHEAD: Duration = Duration::from_secs(60);
/// …and never earlier than half-way through its lifetime, so that a token that lives a few
/// seconds is not refreshed in a loop.
const MAX_SHARE: f64 = 0.5;
/// Two refreshes of one token are at least this far apart, whatever the platform says.
pub const MIN_SPACING: Duration = Duration::from_secs(1);

/// The first retry of a failed refresh comes after this; each next one waits twice as long…
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// …up to this.
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Whether `provider` refreshes a token (rather than rotating a key in stages).
pub fn is_token_provider(provider: RotationProvider) -> bool {
    match provider {
        RotationProvider::Oauth2 | RotationProvider::GithubApp => true,
        RotationProvider::Github | RotationProvider::Command | RotationProvider::Manual => false,
    }
}

/// `access_token` → `access_token.expires_at`.
pub fn expires_key(key: &str) -> String {
    format!("{key}{EXPIRES_SUFFIX}")
}

/// `access_token` → `access_token.issued_at`.
pub fn issued_key(key: &str) -> String {
    format!("{key}{ISSUED_SUFFIX}")
}

/// Whether `key` of `store` is a companion of its refreshed token (`<key>.expires_at`,
/// `<key>.issued_at`): metadata, not a secret. Agents' output is not redacted for it and a
/// webhook never verifies with it (a time, or `never`, is no key).
pub fn is_companion(store: &SecretStoreSpec, key: &str) -> bool {
    store.rotation.as_ref().is_some_and(|r| {
        is_token_provider(r.provider)
            && key
                .strip_prefix(r.key.as_str())
                .is_some_and(|rest| rest == EXPIRES_SUFFIX || rest == ISSUED_SUFFIX)
    })
}

/// What the store knows of a token's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No token, no `<key>.expires_at`, or one that does not parse.
    Unknown,
    /// The platform said the token does not expire.
    Never,
    /// It expires at `at`; `issued` when the daemon received it, if known.
    At {
        at: DateTime<Utc>,
        issued: Option<DateTime<Utc>>,
    },
}

impl Expiry {
    /// The expiry instant, if there is one.
    pub fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Expiry::At { at, .. } => Some(at),
            Expiry::Unknown | Expiry::Never => None,
        }
    }
}

/// The expiry of `key` in `store` (unknown when the token itself is missing or empty).
pub fn expiry(store: &SecretStoreSpec, key: &str) -> Expiry {
    if store.data.get(key).is_none_or(|v| v.is_empty()) {
        return Expiry::Unknown;
    }
    let read = |k: String| store.data.get(&k).map(|v| v.expose().trim().to_owned());
    let Some(expires) = read(expires_key(key)) else {
        return Expiry::Unknown;
    };
    if expires == NEVER {
        return Expiry::Never;
    }
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    match parse(&expires) {
        Some(at) => Expiry::At {
            at,
            issued: read(issued_key(key)).as_deref().and_then(parse),
        },
        None => Expiry::Unknown,
    }
}

/// Why a `refreshBefore` setting is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refreshBefore must be a positive number of seconds or a duration such as `90s`, `10m`, `1h`"
)]
pub struct RefreshBeforeError;

/// `settings.refreshBefore` of a rotation block: `None` when it is not set.
pub fn refresh_before(spec: &RotationSpec) -> Result<Option<Duration>, RefreshBeforeError> {
    match spec.settings.get("refreshBefore") {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(secs) if secs > 0 => Ok(Some(Duration::from_secs(secs))),
            _ => Err(RefreshBeforeError),
        },
        Some(serde_json::Value::String(s)) => s
            .parse::<Age>()
            .map(|a| Some(a.as_duration()))
            .map_err(|_| RefreshBeforeError),
        Some(_) => Err(RefreshBeforeError),
    }
}

/// When a token is to be refreshed next, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Now: its expiry is unknown (or it has none yet).
    Now,
    /// At `at`, ahead of the expiry `expires`.
    At {
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
    },
    /// Only on demand (`secret rotate`): the platform gave it no expiry.
    OnDemand,
}

impl Due {
    /// The instant of the refresh; `now` for [`Due::Now`], `None` for [`Due::OnDemand`].
    pub fn instant(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Due::Now => Some(now),
            Due::At { at, .. } => Some(*at),
            Due::OnDemand => None,
        }
    }
}

/// When a token with `expiry` is refreshed, given the store's `refreshBefore` (if set).
///
/// Ahead of expiry by `refreshBefore`, by default 10 % of the token's lifetime and at least
/// 60 s; when the lifetime is known, never before half of it has passed (a 3-second token is
/// refreshed after 1.5 s, not 60 s before it was issued) and never within [`MIN_SPACING`] of
/// its issue.
pub fn due(expiry: Expiry, refresh_before: Option<Duration>) -> Due {
    let (at, issued) = match expiry {
        Expiry::Unknown => return Due::Now,
        Expiry::Never => return Due::OnDemand,
        Expiry::At { at, issued } => (at, issued),
    };
    let lifetime = issued
        .and_then(|i| (at - i).to_std().ok())
        .filter(|l| !l.is_zero());
    let mut ahead = match (refresh_before, lifetime) {
        (Some(b), _) => b,
        (None, Some(l)) => l.mul_f64(DEFAULT_SHARE).max(MIN_AHEAD),
        (None, None) => MIN_AHEAD,
    };
    if let Some(l) = lifetime {
        ahead = ahead.min(l.mul_f64(MAX_SHARE));
    }
    let mut refresh_at = at - chrono::Duration::from_std(ahead).unwrap_or(chrono::Duration::MAX);
    if let Some(i) = issued {
        let earliest = i + chrono::Duration::from_std(MIN_SPACING).unwrap_or_default();
        refresh_at = refresh_at.max(earliest);
    }
    Due::At {
        at: refresh_at,
        expires: at,
    }
}

/// How long to wait before retry number `attempt` (1 for the first retry) of a refresh that
/// failed for a reason that may pass: 1 s, 2 s, 4 s, … up to 5 minutes.
pub fn retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    FIRST_RETRY.saturating_mul(1u32 << doublings).min(MAX_RETRY)
}

/// The companion keys a refresh commits with the token: its expiry (`never` when the platform
/// gave none) and its issue time, both RFC 3339 in UTC.
pub fn companions(
    key: &str,
    issued: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
) -> [(String, String); 2] {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    [
        (
            expires_key(key),
            expires.map_or_else(|| NEVER.to_owned(), ts),
        ),
        (issued_key(key), ts(issued)),
    ]
}

/// A fingerprint of what a refresh of `key` reads: the rotation block and every value of the
/// token's store and of its credentials store, except the token's own key and companions.
/// A refresh that failed for good (a revoked refresh token, a wrong client secret) is tried
/// again only when this changes: the operator fixed something.
pub fn inputs(store: &SecretStoreSpec, key: &str, credentials: Option<&SecretStoreSpec>) -> String {
    let own = [key.to_owned(), expires_key(key), issued_key(key)];
    let mut text = serde_json::to_string(&store.rotation).unwrap_or_default();
    for (k, v) in &store.data {
        if !own.contains(k) {
            text.push_str(&format!("\n{k}={}", fingerprint(v.expose())));
        }
    }
    text.push_str("\n--");
    for (k, v) in credentials.into_iter().flat_map(|c| &c.data) {
        text.push_str(&format!("\n{k}={}", fingerprint(v.expose())));
    }
    fingerprint(&text)
}

/// Why a refresh runs: what its record's reason begins with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The token's expiry is not known (or there is no token yet).
    UnknownExpiry,
    /// Ahead of its expiry.
    Ahead { expires: DateTime<Utc> },
    /// Retry `attempt` after a failure that may pass.
    Retry {
        attempt: u32,
        expires: Option<DateTime<Utc>>,
    },
    /// `orchestrator secret rotate`.
    OnDemand,
}

impl Why {
    /// The start of the record's reason.
    pub fn describe(self) -> String {
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self {
            Why::UnknownExpiry => "refresh: the token's expiry was not known".to_owned(),
            Why::Ahead { expires } => {
                format!(
                    "refresh ahead of expiry (the token expires at {})",
                    ts(expires)
                )
            }
            Why::Retry {
                attempt,
                expires: Some(e),
            } => format!("retry {attempt} (the token expires at {})", ts(e)),
            Why::Retry {
                attempt,
                expires: None,
            } => format!("retry {attempt}"),
            Why::OnDemand => "refresh on demand (secret rotate)".to_owned(),
        }
    }
}

/// How a refresh went, as the timer owner needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new token is committed.
    Done,
    /// It failed; `permanent` when trying again cannot help until the operator changes
    /// something (a revoked refresh token, a wrong client secret, a missing setting).
    Failed { permanent: bool },
    /// Another refresh of the same store was running.
    Busy,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::SecretValue;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn store(pairs: &[(&str, &str)]) -> SecretStoreSpec {
        SecretStoreSpec {
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SecretValue::new((*v).to_owned())))
                .collect(),
            keep: Default::default(),
            rotation: None,
            description: None,
            applied: None,
        }
    }

    #[test]
    fn the_expiry_is_read_from_the_companion_keys() {
        let check = |pairs: &[(&str, &str)], want: Expiry| {
            assert_eq!(expiry(&store(pairs), "tok"), want, "{pairs:?}");
        };
        check(&[], Expiry::Unknown);
        check(&[("tok", "")], Expiry::Unknown);
        check(&[("tok", "x")], Expiry::Unknown);
        check(
            &[("tok", "x"), ("tok.expires_at", "not a time")],
            Expiry::Unknown,
        );
        check(&[("tok", "x"), ("tok.expires_at", "never")], Expiry::Never);
        check(
            &[("tok.expires_at", "2026-01-01T00:00:00Z")],
            Expiry::Unknown,
        );
        check(
            &[
                ("tok", "x"),
                ("tok.expires_at", "2026-01-01T12:00:00+09:00"),
            ],
            Expiry::At {
                at: t("2026-01-01T03:00:00Z"),
                issued: None,
            },
        );
        check(
            &[
                ("tok", "x"),
                ("tok.expires_at", "2026-01-01T12:00:00Z"),
                ("tok.issued_at", "2026-01-01T00:00:00.000Z"),
            ],
            Expiry::At {
                at: t("2026-01-01T12:00:00Z"),
                issued: Some(t("2026-01-01T00:00:00Z")),
            },
        );
    }

    #[test]
    fn a_token_is_refreshed_ahead_of_its_expiry() {
        let at = |expires: &str, issued: Option<&str>| Expiry::At {
            at: t(expires),
            issued: issued.map(t),
        };
        let check = |e: Expiry, before: Option<u64>, want: Due| {
            assert_eq!(
                due(e, before.map(Duration::from_secs)),
                want,
                "{e:?} {before:?}"
            );
        };
        let refresh = |at: &str, expires: &str| Due::At {
            at: t(at),
            expires: t(expires),
        };
        check(Expiry::Unknown, None, Due::Now);
        check(Expiry::Never, Some(60), Due::OnDemand);
        // Slack: 12-hour tokens, 10 % = 72 minutes ahead.
        check(
            at("2026-01-01T12:00:00Z", Some("2026-01-01T00:00:00Z")),
            None,
            refresh("2026-01-01T10:48:00Z", "2026-01-01T12:00:00Z"),
        );
        // GitHub installation tokens: one hour, 10 % = 6 minutes.
        check(
            at("2026-01-01T01:00:00Z", Some("2026-01-01T00:00:00Z")),
            None,
            refresh("2026-01-01T00:54:00Z", "2026-01-01T01:00:00Z"),
        );
        // Ten minutes: 10 % is 60 s, the floor.
        check(
            at("2026-01-01T00:05:00Z", Some("2026-01-01T00:00:00Z")),
            None,
            refresh("2026-01-01T00:04:00Z", "2026-01-01T00:05:00Z"),
        );
        // The setting wins…
        check(
            at("2026-01-01T12:00:00Z", Some("2026-01-01T00:00:00Z")),
            Some(3600),
            refresh("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"),
        );
        // …but never before half of the lifetime.
        check(
            at("2026-01-01T00:00:03Z", Some("2026-01-01T00:00:00Z")),
            None,
            refresh("2026-01-01T00:00:01.500Z", "2026-01-01T00:00:03Z"),
        );
        check(
            at("2026-01-01T01:00:00Z", Some("2026-01-01T00:00:00Z")),
            Some(7200),
            refresh("2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"),
        );
        // A token that lives no time at all is not refreshed in a loop.
        check(
            at("2026-01-01T00:00:00Z", Some("2026-01-01T00:00:00Z")),
            None,
            refresh("2026-01-01T00:00:01Z", "2026-01-01T00:00:00Z"),
        );
        // Without an issue time, 60 s ahead (or the setting).
        check(
            at("2026-01-01T12:00:00Z", None),
            None,
            refresh("2026-01-01T11:59:00Z", "2026-01-01T12:00:00Z"),
        );
        check(
            at("2026-01-01T12:00:00Z", None),
            Some(600),
            refresh("2026-01-01T11:50:00Z", "2026-01-01T12:00:00Z"),
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let got: Vec<u64> = (1..=12).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(0), FIRST_RETRY);
    }

    #[test]
    fn refresh_before_takes_seconds_or_a_duration() {
        let check = |v: serde_json::Value, want: Result<Option<u64>, RefreshBeforeError>| {
            let spec = RotationSpec {
                key: "k".into(),
                provider: RotationProvider::Oauth2,
                settings: [("refreshBefore".to_owned(), v.clone())].into(),
                credentials: None,
                grace_seconds: 0,
            };
            assert_eq!(
                refresh_before(&spec).map(|d| d.map(|d| d.as_secs())),
                want,
                "{v}"
            );
        };
        check(serde_json::json!(90), Ok(Some(90)));
        check(serde_json::json!("10m"), Ok(Some(600)));
        check(serde_json::json!("1h"), Ok(Some(3600)));
        check(serde_json::json!(0), Err(RefreshBeforeError));
        check(serde_json::json!(-5), Err(RefreshBeforeError));
        check(serde_json::json!("soon"), Err(RefreshBeforeError));
        check(serde_json::json!(true), Err(RefreshBeforeError));
    }

    #[test]
    fn companions_are_what_expiry_reads_back() {
        let issued = t("2026-01-01T00:00:00.250Z");
        let expires = t("2026-01-01T12:00:00Z");
        let mut pairs: Vec<(String, String)> = companions("tok", issued, Some(expires)).into();
        pairs.push(("tok".into(), "x".into()));
        let s = store(
            &pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            expiry(&s, "tok"),
            Expiry::At {
                at: expires,
                issued: Some(issued)
            }
        );
        let never = companions("tok", issued, None);
        assert_eq!(never[0], ("tok.expires_at".to_owned(), "never".to_owned()));
    }

    #[test]
    fn companions_are_metadata_only_beside_a_refreshed_token() {
        let mut s = store(&[]);
        assert!(!is_companion(&s, "tok.expires_at"), "no rotation block");
        s.rotation = Some(RotationSpec {
            key: "tok".into(),
            provider: RotationProvider::Oauth2,
            settings: Default::default(),
            credentials: None,
            grace_seconds: 0,
        });
        for (key, want) in [
            ("tok.expires_at", true),
            ("tok.issued_at", true),
            ("tok", false),
            ("refresh_token", false),
            ("other.expires_at", false),
            ("tok.next", false),
        ] {
            assert_eq!(is_companion(&s, key), want, "{key}");
        }
        if let Some(r) = s.rotation.as_mut() {
            r.provider = RotationProvider::Github;
        }
        assert!(!is_companion(&s, "tok.expires_at"), "not a token provider");
    }

    #[test]
    fn the_inputs_change_with_what_a_refresh_reads_and_not_with_the_token() {
        let base = store(&[("tok", "a"), ("refresh_token", "r1")]);
        let creds = store(&[("client_id", "id"), ("client_secret", "s")]);
        let before = inputs(&base, "tok", Some(&creds));
        let refreshed = store(&[
            ("tok", "b"),
            ("tok.expires_at", "2026-01-01T00:00:00Z"),
            ("tok.issued_at", "2026-01-01T00:00:00Z"),
            ("refresh_token", "r1"),
        ]);
        assert_eq!(inputs(&refreshed, "tok", Some(&creds)), before);
        let new_refresh = store(&[("tok", "a"), ("refresh_token", "r2")]);
        assert_ne!(inputs(&new_refresh, "tok", Some(&creds)), before);
        let new_secret = store(&[("client_id", "id"), ("client_secret", "t")]);
        assert_ne!(inputs(&base, "tok", Some(&new_secret)), before);
    }
}

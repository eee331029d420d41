//! The sizes the daemon accepts from its doors, in one place, and the one rule for what may be
//! stored as a secret value. The control API, the CLI and manifest validation all call these, so
//! a value refused through one door is refused through every door, with the same words.
//!
//! The limits keep one careless or hostile request from growing the daemon's memory, its
//! database or every later listing: a task's goal is copied into its row and its prompts, a
//! payload into every step, a secret value into every redactor.

/// The manifests of one apply, added up (YAML text).
pub const MAX_APPLY_BYTES: usize = 16 << 20;
/// How deep a YAML document may nest mappings and sequences.
pub const MAX_NESTING: usize = 64;
/// A task's goal (`task create --goal`, or rendered from a trigger).
pub const MAX_GOAL_BYTES: usize = 1 << 20;
/// A payload handed to a task (`trigger fire --payload`, `task create --payload`).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// One SecretStore value.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 << 10;
/// The number of keys in one SecretStore.
pub const MAX_SECRET_KEYS: usize = 1024;

/// The mask `get` and `describe` print instead of a value (see `SecretValue`).
const MASK: &str = "***";
/// What run logs show instead of a secret (see `redact::MARK`).
const REDACTED: &str = "[REDACTED]";

/// `n` bytes for a message: `70.0 MiB`, `64 KiB`, `12 bytes`.
pub fn human_bytes(n: usize) -> String {
    if n >= 1 << 20 {
        let mib = n as f64 / f64::from(1u32 << 20);
        if n.is_multiple_of(1 << 20) {
            format!("{} MiB", n >> 20)
        } else {
            format!("{mib:.1} MiB")
        }
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// A value over its size limit: `goal is 60.0 MiB; the limit is 1 MiB`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {}; the limit is {}", human_bytes(*.len), human_bytes(*.limit))]
pub struct TooLarge {
    /// What is too large, as the message names it (`goal`, `the value`).
    pub what: String,
    pub len: usize,
    pub limit: usize,
}

/// [`TooLarge`] when `len` bytes of `what` exceed `limit`.
pub fn check_size(what: &str, len: usize, limit: usize) -> Result<(), TooLarge> {
    if len > limit {
        Err(TooLarge {
            what: what.to_owned(),
            len,
            limit,
        })
    } else {
        Ok(())
    }
}

/// Why a value cannot be stored as a secret; each message says what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretValueError {
    #[error("the value is empty: give the secret (to remove a key, use `secret unset`)")]
    Empty,
    #[error(
        "the value is a masked value copied from `orchestrator get` or a run log (`***`, \
         `[REDACTED]`), not a secret: give the real value"
    )]
    Mask,
    #[error("{0}: secrets are keys and tokens, not files")]
    TooLarge(TooLarge),
}

/// Whether `value` is something the daemon itself shows in place of a secret: the `***` mask in
/// any form (`***`, `*****`, `*** (40 bytes, sha256:…)`) or the run logs' `[REDACTED]`. Storing
/// one would replace a real secret with its mask, so it is refused everywhere.
pub fn is_mask(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() {
        return false;
    }
    v.bytes().all(|b| b == b'*')
        || (v.starts_with(MASK) && v.contains(" bytes, sha256:"))
        || v.split(REDACTED).all(|rest| rest.trim().is_empty())
}

/// The rule for a value stored in a SecretStore through the control API or the CLI: not
/// empty, not a mask, at most [`MAX_SECRET_VALUE_BYTES`]. The error says what to do instead.
pub fn check_secret_value(value: &str) -> Result<(), SecretValueError> {
    if value.is_empty() {
        return Err(SecretValueError::Empty);
    }
    check_secret_value_content(value)
}

/// The part of [`check_secret_value`] that also holds in manifests, where an empty value is an
/// unset key (a webhook trigger tries only non-empty keys).
pub fn check_secret_value_content(value: &str) -> Result<(), SecretValueError> {
    if is_mask(value) {
        return Err(SecretValueError::Mask);
    }
    check_size("the value", value.len(), MAX_SECRET_VALUE_BYTES).map_err(SecretValueError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, want: Result<(), &str>) {
        match (check_secret_value(value).map_err(|e| e.to_string()), want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(w)) => assert!(e.contains(w), "{value:?}: {e:?} lacks {w:?}"),
            (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn secret_values() {
        check("s3cr3t", Ok(()));
        check("a*b", Ok(()));
        check("***x", Ok(()));
        check("[REDACTED]x", Ok(()));
        check("", Err("empty"));
        check("***", Err("mask"));
        check(" *** ", Err("mask"));
        check("*", Err("mask"));
        check("********", Err("mask"));
        check("*** (40 bytes, sha256:0a1b2c3d)", Err("mask"));
        check("[REDACTED]", Err("mask"));
        check("[REDACTED][REDACTED]", Err("mask"));
        check(&"x".repeat(MAX_SECRET_VALUE_BYTES), Ok(()));
        check(
            &"x".repeat(MAX_SECRET_VALUE_BYTES + 1),
            Err("the value is 64.0 KiB; the limit is 64 KiB"),
        );
    }

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(70 << 20), "70 MiB");
        assert_eq!(human_bytes((60 << 20) + (1 << 19)), "60.5 MiB");
        assert_eq!(
            check_size("apply", 70 << 20, MAX_APPLY_BYTES).map_err(|e| e.to_string()),
            Err("apply is 70 MiB; the limit is 16 MiB".into())
        );
        assert!(check_size("apply", 1, MAX_APPLY_BYTES).is_ok());
    }
}

//! Secret values in manifests: [`SecretValue`], which is zeroized on drop and never shows itself
//! in `Debug` or `Serialize`, the string-only YAML readers the specs' `data` maps use (a YAML
//! number or boolean would silently change a secret, so it is refused without echoing it), and
//! [`fingerprint`], the short digest that tells values apart without revealing them.
//!
//! A SecretStore's `data` may also declare a key without a value, `github: {keep: true}`
//! ([`DataEntry::Keep`]): the key keeps its live value (see `domain::secret_merge`). What an
//! apply declared per key is remembered as a [`Declared`] — a fingerprint or the keep marker,
//! never a value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

/// `sha256:` and the first 8 hex digits of the SHA-256 of a value: enough to tell keys apart and
/// to compare with a platform's copy, not enough to recover anything.
pub fn fingerprint(value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..4]))
}

/// A secret string. It is zeroized when dropped; `Debug` prints `***` and `Serialize` writes `***`,
/// so a secret cannot leak through logs, API responses or stored spec JSON by accident. The real
/// value is reachable only through [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub const MASK: &'static str = "***";

    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::MASK)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretScalar).map(SecretValue::new)
    }
}

/// Accepts only a string and never echoes the value in its error: YAML turns `012345` or `yes`
/// into numbers and booleans, which would silently change a secret, so those are refused with a
/// hint to quote the value.
struct SecretScalar;

impl<'de> Visitor<'de> for SecretScalar {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("value is empty: give a quoted string"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("value is a list: values must be strings"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "value is a mapping: values must be strings",
        ))
    }
}

const NOT_A_STRING: &str =
    "value is not a string (YAML read it as a number or boolean): quote it, e.g. \"0123\"";

/// A mapping with unique string keys; each value is read as `T`.
struct StringMap<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for StringMap<T> {
    type Value = BTreeMap<String, T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of string keys to string values")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<T>()?;
            if out.insert(key.clone(), value).is_some() {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`: each key may appear once"
                )));
            }
        }
        Ok(out)
    }
}

/// A string, read with [`SecretScalar`]'s rules.
struct Scalar(String);
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(SecretScalar).map(Scalar)
    }
}

/// One entry of a SecretStore's `data` as a manifest writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataEntry {
    /// `key: "value"`.
    Value(SecretValue),
    /// `key: {keep: true}`: the key is declared without a value and keeps its live one.
    Keep,
}

/// What an apply declared for one key of a SecretStore: the fingerprint of the value it gave,
/// or the keep marker. Stored beside the sealed values so that the next apply can tell whether
/// the manifest changed a key (the three-way merge); it never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Declared {
    /// A value, known only by its [`fingerprint`].
    Fingerprint(String),
    /// `{keep: true}`.
    Keep,
}

/// Per key, what the last apply of a SecretStore declared.
pub type LastApplied = BTreeMap<String, Declared>;

/// A SecretStore's `data` split into the values a manifest gives and the keys it declares with
/// `{keep: true}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SecretData {
    pub(super) values: BTreeMap<String, SecretValue>,
    pub(super) keep: BTreeSet<String>,
}

impl<'de> Deserialize<'de> for SecretData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = d.deserialize_any(StringMap::<DataEntry>(std::marker::PhantomData))?;
        let mut out = SecretData::default();
        for (k, e) in entries {
            match e {
                DataEntry::Value(v) => {
                    out.values.insert(k, v);
                }
                DataEntry::Keep => {
                    out.keep.insert(k);
                }
            }
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for DataEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EntryVisitor)
    }
}

const KEEP_HINT: &str = "give the value as a quoted string, or write `{keep: true}` to declare the key without a value (it keeps the value set by `orchestrator secret set` or a rotation)";

/// A string is a value; `{keep: true}` is the keep marker; anything else is refused without
/// echoing what was written (it may be a secret).
struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = DataEntry;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or {keep: true}")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<DataEntry, E> {
        Ok(DataEntry::Value(SecretValue::new(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<DataEntry, E> {
        Ok(DataEntry::Value(SecretValue::new(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<DataEntry, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<DataEntry, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<DataEntry, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<DataEntry, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_unit<E: de::Error>(self) -> Result<DataEntry, E> {
        Err(E::custom(format!("value is empty: {KEEP_HINT}")))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<DataEntry, A::Error> {
        Err(de::Error::custom(format!("value is a list: {KEEP_HINT}")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DataEntry, A::Error> {
        let mut keep = None;
        let mut other = false;
        while let Some(field) = map.next_key::<String>()? {
            if field == "keep" && keep.is_none() {
                keep = Some(map.next_value_seed(KeepFlag)?);
            } else {
                other = true;
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        match (keep, other) {
            (Some(true), false) => Ok(DataEntry::Keep),
            (Some(false), false) => Err(de::Error::custom(format!(
                "`{{keep: false}}` keeps nothing: {KEEP_HINT}"
            ))),
            _ => Err(de::Error::custom(format!(
                "a mapping here must be exactly `{{keep: true}}`: {KEEP_HINT}"
            ))),
        }
    }
}

/// The value of `keep`: `true` or `false`, nothing else (and nothing echoed).
struct KeepFlag;

impl<'de> de::DeserializeSeed<'de> for KeepFlag {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct Flag;
        impl<'de> Visitor<'de> for Flag {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
        }
        d.deserialize_any(Flag)
            .map_err(|_: D::Error| de::Error::custom(format!("`keep` must be `true`: {KEEP_HINT}")))
    }
}

/// Reads a mapping of string keys to string values (`EnvStore` data); `null` is an empty map.
pub(super) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = d.deserialize_any(StringMap::<Scalar>(std::marker::PhantomData))?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_debug_and_json_are_masked() {
        let v = SecretValue::new("hunter2".into());
        assert_eq!(format!("{v:?}"), "***");
        assert_eq!(serde_json::to_string(&v).unwrap_or_default(), "\"***\"");
        assert_eq!(v.expose(), "hunter2");
    }
}

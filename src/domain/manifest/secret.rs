//! Secret values in manifests: [`SecretValue`], which is zeroized on drop and never shows itself
//! in `Debug` or `Serialize`, the string-only YAML readers the specs' `data` maps use (a YAML
//! number or boolean would silently change a secret, so it is refused without echoing it), and
//! [`fingerprint`], the short digest that tells values apart without revealing them.

use std::collections::BTreeMap;
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

struct StringMap<F>(F);

impl<'de, V, F: Fn(String) -> V> Visitor<'de> for StringMap<F> {
    type Value = BTreeMap<String, V>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of string keys to string values")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ScalarSeed)?;
            if out.insert(key.clone(), (self.0)(value)).is_some() {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`: each key may appear once"
                )));
            }
        }
        Ok(out)
    }
}

struct ScalarSeed;
impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(SecretScalar)
    }
}

/// Reads a mapping of string keys to string values (`EnvStore` data); `null` is an empty map.
pub(super) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_any(StringMap(|s| s))
}

/// Reads a mapping of string keys to secret values (`SecretStore` data); `null` is an empty map.
pub(super) fn secret_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SecretValue>, D::Error> {
    d.deserialize_any(StringMap(SecretValue::new))
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

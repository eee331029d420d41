//! The three-way merge of a SecretStore's keys at apply (SPEC §7), as `kubectl apply` merges
//! fields: the **last applied** declaration (per key, the fingerprint of the value the last apply
//! gave, or its `{keep: true}` marker — never a value), the **live** values (which a rotation,
//! `secret set` or `secret rotate` may have changed since), and the **new** manifest.
//!
//! Per key:
//! - the manifest gives a value: if it is the value the last apply gave (same fingerprint), the
//!   key keeps its live value — the manifest did not change it, so whoever changed it live wins;
//!   otherwise (changed, newly declared, or a value where the last apply had `{keep: true}`) the
//!   manifest's value wins. A key without a live value takes the manifest's value.
//! - the manifest declares `{keep: true}`: the key keeps its live value; without one it is
//!   *pending* — the store holds no value for it (an empty value is never a key), so it verifies
//!   nothing until `orchestrator secret set` gives it one.
//! - the manifest leaves it out: a key the last apply declared is removed (as kubectl removes a
//!   field you delete from the file); a key no apply declared — `secret set`, a rotation's
//!   staging key `github.next` — is kept.
//!
//! A store written before this merge existed has no record; its live keys stand for the last
//! apply (which is what the replace-whole apply of that version left).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::manifest::{Declared, LastApplied, SecretStoreSpec, SecretValue, fingerprint};

/// Who set a key's live value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetBy {
    /// `orchestrator apply` (a manifest's value).
    Apply,
    /// `orchestrator secret set` / `secret unset`.
    SecretSet,
    /// A rotation's stages (`secret rotate`, the rotation workflow).
    Rotation,
}

impl SetBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SetBy::Apply => "apply",
            SetBy::SecretSet => "secret-set",
            SetBy::Rotation => "rotation",
        }
    }

    pub fn parse(s: &str) -> Option<SetBy> {
        [SetBy::Apply, SetBy::SecretSet, SetBy::Rotation]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// What an apply does to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyAction {
    /// The key had no live value; it takes the manifest's.
    Added,
    /// The manifest changed the key: its value replaces the live one.
    Replaced,
    /// The live value stays (see [`KeptBecause`]).
    Kept,
    /// The last apply declared the key and this manifest does not: it is removed.
    Removed,
    /// Declared `{keep: true}` but without a live value: it verifies nothing until it is set.
    Pending,
}

impl KeyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAction::Added => "added",
            KeyAction::Replaced => "replaced",
            KeyAction::Kept => "kept",
            KeyAction::Removed => "removed",
            KeyAction::Pending => "pending",
        }
    }
}

/// Why a key kept its live value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeptBecause {
    /// The manifest declares it `{keep: true}`.
    Keep,
    /// The manifest's value is the one the last apply gave: the manifest did not change it.
    Unchanged,
    /// No apply declared it (`secret set`, a rotation's staging key).
    Undeclared,
}

/// One key of a SecretStore apply: what happens to it, with fingerprints (never values). Keys
/// whose live value already is the manifest's are not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDiff {
    pub key: String,
    pub action: KeyAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub because: Option<KeptBecause>,
    /// The key's fingerprint after the apply (absent when removed or pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Its fingerprint before the apply (replaced, removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The fingerprint of the manifest's value when the live value is kept instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared: Option<String>,
    /// Who set the live value that is kept, replaced or removed, when that was not this
    /// manifest's last apply (filled in by the daemon from the key's metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_set_by: Option<SetBy>,
    /// When that live value was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_set_at: Option<DateTime<Utc>>,
    /// The live value this diff keeps, replaces or removes is not what the last apply declared.
    #[serde(skip)]
    pub set_live: bool,
}

impl KeyDiff {
    fn new(key: &str, action: KeyAction) -> KeyDiff {
        KeyDiff {
            key: key.to_owned(),
            action,
            because: None,
            fingerprint: None,
            previous: None,
            declared: None,
            live_set_by: None,
            live_set_at: None,
            set_live: false,
        }
    }
}

/// The store an apply leaves, and what it did to each key.
#[derive(Debug, Clone)]
pub struct Merged {
    /// Live values merged, `keep` empty, `applied` recording this manifest's declaration.
    pub spec: SecretStoreSpec,
    pub keys: Vec<KeyDiff>,
}

/// The declaration a store without a record stands for: its live keys, as a replace-whole apply
/// left them.
fn implied(data: &std::collections::BTreeMap<String, SecretValue>) -> LastApplied {
    data.iter()
        .map(|(k, v)| (k.clone(), Declared::Fingerprint(fingerprint(v.expose()))))
        .collect()
}

/// Merges the manifest `new` into the live store (`None` when the apply creates it).
pub fn merge(live: Option<&SecretStoreSpec>, new: &SecretStoreSpec) -> Merged {
    let last: LastApplied = live
        .map(|s| s.applied.clone().unwrap_or_else(|| implied(&s.data)))
        .unwrap_or_default();
    let live_data = live.map(|s| &s.data);
    let names: BTreeSet<&str> = live_data
        .into_iter()
        .flat_map(|d| d.keys())
        .chain(last.keys())
        .chain(new.data.keys())
        .chain(&new.keep)
        .map(String::as_str)
        .collect();
    let mut data = std::collections::BTreeMap::new();
    let mut record = LastApplied::new();
    let mut keys = Vec::new();
    for k in names {
        let current = live_data.and_then(|d| d.get(k));
        let current_fp = current.map(|v| fingerprint(v.expose()));
        let declared_before = last.get(k);
        // Whether the live value is something other than what the last apply gave.
        let set_live = current_fp
            .as_ref()
            .is_some_and(|fp| declared_before != Some(&Declared::Fingerprint(fp.clone())));
        let mut diff = |action, because, fingerprint, previous, declared| {
            keys.push(KeyDiff {
                because,
                fingerprint,
                previous,
                declared,
                set_live,
                ..KeyDiff::new(k, action)
            });
        };
        match (new.data.get(k), new.keep.contains(k)) {
            (Some(value), _) => {
                let fp = fingerprint(value.expose());
                let unchanged_since_last =
                    declared_before == Some(&Declared::Fingerprint(fp.clone()));
                record.insert(k.to_owned(), Declared::Fingerprint(fp.clone()));
                match current {
                    None => {
                        data.insert(k.to_owned(), value.clone());
                        diff(KeyAction::Added, None, Some(fp), None, None);
                    }
                    Some(v) if v == value => {
                        data.insert(k.to_owned(), v.clone());
                    }
                    Some(v) if unchanged_since_last => {
                        data.insert(k.to_owned(), v.clone());
                        diff(
                            KeyAction::Kept,
                            Some(KeptBecause::Unchanged),
                            current_fp,
                            None,
                            Some(fp),
                        );
                    }
                    Some(_) => {
                        data.insert(k.to_owned(), value.clone());
                        diff(KeyAction::Replaced, None, Some(fp), current_fp, None);
                    }
                }
            }
            (None, true) => {
                record.insert(k.to_owned(), Declared::Keep);
                match current {
                    Some(v) => {
                        data.insert(k.to_owned(), v.clone());
                        diff(
                            KeyAction::Kept,
                            Some(KeptBecause::Keep),
                            current_fp,
                            None,
                            None,
                        );
                    }
                    None => diff(KeyAction::Pending, None, None, None, None),
                }
            }
            (None, false) => match (current, declared_before) {
                (Some(_), Some(_)) => diff(KeyAction::Removed, None, None, current_fp, None),
                (Some(v), None) => {
                    data.insert(k.to_owned(), v.clone());
                    diff(
                        KeyAction::Kept,
                        Some(KeptBecause::Undeclared),
                        current_fp,
                        None,
                        None,
                    );
                }
                (None, _) => {}
            },
        }
    }
    // A store without a record keeps having none while this apply declares what it implies, so
    // that re-applying it after an upgrade changes nothing.
    let applied = match live {
        Some(s) if s.applied.is_none() && record == implied(&s.data) && data == s.data => None,
        _ => Some(record),
    };
    Merged {
        spec: SecretStoreSpec {
            data,
            keep: BTreeSet::new(),
            rotation: new.rotation.clone(),
            description: new.description.clone(),
            applied,
        },
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::parse_documents;

    /// A manifest's spec: `k=v` gives a value, `k` alone is `{keep: true}`.
    fn manifest(entries: &[&str]) -> SecretStoreSpec {
        let data: String = entries
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => format!("    {k}: \"{v}\"\n"),
                None => format!("    {e}: {{keep: true}}\n"),
            })
            .collect();
        let text = format!(
            "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: s}}\nspec:\n  data:\n{data}"
        );
        let (mut docs, problems) = parse_documents("f", &text);
        assert!(problems.is_empty(), "{problems:?}");
        match docs.remove(0).manifest.spec {
            crate::domain::manifest::Spec::SecretStore(s) => s,
            other => panic!("not a SecretStore: {other:?}"),
        }
    }

    /// The live store after applying `applies` in order, then setting `live` (`k=v` sets, `-k`
    /// unsets) as `secret set` would.
    fn live(applies: &[&[&str]], patches: &[&str]) -> Option<SecretStoreSpec> {
        let mut spec: Option<SecretStoreSpec> = None;
        for a in applies {
            spec = Some(merge(spec.as_ref(), &manifest(a)).spec);
        }
        if let Some(s) = &mut spec {
            for p in patches {
                match p.split_once('=') {
                    Some((k, v)) => {
                        s.data.insert(k.into(), SecretValue::new(v.into()));
                    }
                    None => {
                        s.data.remove(p.trim_start_matches('-'));
                    }
                }
            }
        }
        spec
    }

    /// Merges `new` into `live` and renders the result as `k=v …` and the diffs as
    /// `k:action[/because] …`.
    fn check(live: Option<SecretStoreSpec>, new: &[&str], want_data: &str, want_diff: &str) {
        let m = merge(live.as_ref(), &manifest(new));
        let data: Vec<String> = m
            .spec
            .data
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        let diff: Vec<String> = m
            .keys
            .iter()
            .map(|d| match d.because {
                Some(b) => format!(
                    "{}:{}/{}",
                    d.key,
                    d.action.as_str(),
                    serde_json::to_value(b)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                None => format!("{}:{}", d.key, d.action.as_str()),
            })
            .collect();
        assert_eq!(data.join(" "), want_data, "data for {new:?}");
        assert_eq!(diff.join(" "), want_diff, "diff for {new:?}");
        assert!(m.spec.keep.is_empty());
    }

    #[test]
    fn a_rotated_key_survives_reapplying_the_original_manifest() {
        let rotated = || live(&[&["github=old"]], &["github=rotated"]);
        check(
            rotated(),
            &["github=old"],
            "github=rotated",
            "github:kept/unchanged",
        );
        // Changing the value in the file replaces it.
        check(
            rotated(),
            &["github=fresh"],
            "github=fresh",
            "github:replaced",
        );
        // Writing the live value itself is no change at all.
        check(rotated(), &["github=rotated"], "github=rotated", "");
    }

    #[test]
    fn keys_removed_from_the_manifest_go_and_keys_added_live_stay() {
        let l = || live(&[&["a=1", "b=2"]], &["staged=3"]);
        check(
            l(),
            &["a=1"],
            "a=1 staged=3",
            "b:removed staged:kept/undeclared",
        );
        check(
            l(),
            &[],
            "staged=3",
            "a:removed b:removed staged:kept/undeclared",
        );
        // A manifest that now gives a value for a key set live wins.
        check(
            l(),
            &["a=1", "b=2", "staged=9"],
            "a=1 b=2 staged=9",
            "staged:replaced",
        );
    }

    #[test]
    fn keep_markers_keep_the_live_value_and_pend_without_one() {
        check(None, &["github"], "", "github:pending");
        let set = || live(&[&["github"]], &["github=set-live"]);
        check(set(), &["github"], "github=set-live", "github:kept/keep");
        // The agent's flow: keep the old key, add the new one, then apply the new one only.
        let both = merge(set().as_ref(), &manifest(&["github", "github.next=new"])).spec;
        assert_eq!(both.data.len(), 2);
        check(
            Some(both),
            &["github=new"],
            "github=new",
            "github:replaced github.next:removed",
        );
        // A marker where the last apply gave a value keeps whatever is live.
        check(
            live(&[&["github=old"]], &["github=rotated"]),
            &["github"],
            "github=rotated",
            "github:kept/keep",
        );
        // A value where the last apply had the marker is a change: it wins.
        check(set(), &["github=mine"], "github=mine", "github:replaced");
    }

    #[test]
    fn a_key_unset_live_is_given_the_manifest_value_again() {
        check(live(&[&["a=1"]], &["-a"]), &["a=1"], "a=1", "a:added");
    }

    #[test]
    fn the_last_apply_is_recorded_as_fingerprints_only() {
        let m = merge(None, &manifest(&["a=plain-value", "b"]));
        let applied = m.spec.applied.expect("a record");
        assert_eq!(
            applied.get("a"),
            Some(&Declared::Fingerprint(fingerprint("plain-value")))
        );
        assert_eq!(applied.get("b"), Some(&Declared::Keep));
        let json = serde_json::to_string(&applied).unwrap_or_default();
        assert!(!json.contains("plain-value"), "{json}");
        assert_eq!(m.keys[0].fingerprint, Some(fingerprint("plain-value")));
    }

    #[test]
    fn a_store_from_before_the_merge_changes_nothing_when_reapplied() {
        let mut old = manifest(&["a=1"]);
        old.applied = None;
        let m = merge(Some(&old), &manifest(&["a=1"]));
        assert_eq!(
            m.spec, old,
            "no record is invented, so the apply is unchanged"
        );
        // Its live keys stand for the last apply: a key left out is removed.
        let mut two = manifest(&["a=1", "b=2"]);
        two.applied = None;
        check(Some(two), &["a=1"], "a=1", "b:removed");
    }
}

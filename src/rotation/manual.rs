//! The `manual` rotation provider, for platforms whose secret only a person can change — Slack's
//! signing secret, which the app's settings page regenerates and no API sets. The operator gives
//! the new value (`orchestrator secret rotate STORE --value-from-stdin`); the create stage stages
//! it as `<key>.next` instead of drawing a random one; the set stage is the operator's (the daemon
//! does nothing there, and a rollback cannot set the platform back: it says so); the test stage
//! waits for the platform's next delivery verified with the new value, from outside; finish
//! retires the old value after the grace, as with every provider. This file checks the value the
//! operator gave before a rotation starts; the stages are `mod.rs`'s, like every provider's.

use super::{Provider, RotationError};
use crate::domain::manifest::{SecretStoreSpec, SecretValue};
use crate::domain::rotation::staging_key;

/// Checks `given`, the new value from the request, against the provider and the store `spec`
/// (named `store`) whose `key` is rotated: the `manual` provider needs one (a usable value, not
/// the one in force, and not beside another staged one); the others make their own.
pub fn check_given(
    provider: &Provider,
    given: Option<&SecretValue>,
    store: &str,
    key: &str,
    spec: &SecretStoreSpec,
) -> Result<(), RotationError> {
    let store = store.to_owned();
    let value = match (provider, given) {
        (Provider::Manual, Some(v)) => v,
        (Provider::Manual, None) => return Err(RotationError::NeedsValue { store }),
        (other, Some(_)) => {
            return Err(RotationError::ValueNotWanted {
                store,
                provider: other.name(),
            });
        }
        (_, None) => return Ok(()),
    };
    let key = key.to_owned();
    if let Err(reason) = crate::domain::limits::check_secret_value(value.expose()) {
        return Err(RotationError::BadValue { store, key, reason });
    }
    if spec
        .data
        .get(&key)
        .is_some_and(|old| old.expose() == value.expose())
    {
        return Err(RotationError::SameValue { store, key });
    }
    let staging = staging_key(&key);
    if spec
        .data
        .get(&staging)
        .is_some_and(|s| s.expose() != value.expose())
    {
        return Err(RotationError::StagingTaken { store, staging });
    }
    Ok(())
}

//! A metric family with a bounded number of label sets: [`Capped`] admits new label sets until
//! the family holds [`CAP`] of them (counting room for every folded set it may still need),
//! and records each further one under its [`Fold`]ed label set, whose unbounded values
//! (trigger, key, workflow and step names) read `other`. A misbehaving sender that invents
//! trigger paths, or a project with thousands of workflows, cannot grow the scrape without
//! bound.

use std::hash::Hash;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::{Family, MetricConstructor};

/// The most label sets one family holds.
pub const CAP: usize = 1000;

/// The label value that stands for every value beyond the cap.
pub const OTHER: &str = "other";

/// A label set whose unbounded values can be folded into [`OTHER`].
pub trait Fold: Clone + Hash + Eq + EncodeLabelSet + Send + Sync + 'static {
    /// How many distinct folded label sets there can be (the product of the sizes of the
    /// bounded labels): the cap keeps room for all of them.
    const FOLDED: usize;
    /// The same label set with every unbounded value replaced by [`OTHER`].
    fn fold(&self) -> Self;
}

/// An operator-chosen name (project, trigger, key, workflow, step) as a label value: unbounded
/// in principle, so only ever used in a [`Capped`] family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    pub fn new(s: &str) -> Name {
        Name(s.to_owned())
    }

    pub fn other() -> Name {
        Name(OTHER.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.0.as_str(), encoder)
    }
}

/// A family that holds at most [`CAP`] label sets.
pub struct Capped<S, M, C = fn() -> M> {
    family: Family<S, M, C>,
    /// The label sets the family holds, counted under this lock, so that two new ones cannot
    /// both take the last place.
    held: Mutex<usize>,
}

impl<S: Fold, M, C: MetricConstructor<M>> Capped<S, M, C> {
    pub fn new(family: Family<S, M, C>) -> Self {
        Capped {
            family,
            held: Mutex::new(0),
        }
    }

    /// The family, to register.
    pub fn family(&self) -> &Family<S, M, C>
    where
        C: Clone,
    {
        &self.family
    }

    /// Runs `f` on the metric of `labels`, or of its folded set once the family is full. A label
    /// set seen before costs one read lock and one hash lookup.
    pub fn with(&self, labels: S, f: impl FnOnce(&M)) {
        if let Some(m) = self.family.get(&labels) {
            return f(&m);
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have admitted it meanwhile.
        if let Some(m) = self.family.get(&labels) {
            drop(held);
            return f(&m);
        }
        let labels = if *held + S::FOLDED < CAP {
            labels
        } else {
            labels.fold()
        };
        if self.family.get(&labels).is_none() {
            *held += 1;
        }
        let metric = self.family.get_or_create(&labels);
        drop(held);
        f(&metric);
    }

    /// Label sets held now.
    pub fn len(&self) -> usize {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct L {
        trigger: Name,
        ok: bool,
    }

    impl Fold for L {
        const FOLDED: usize = 2;
        fn fold(&self) -> L {
            L {
                trigger: Name::other(),
                ok: self.ok,
            }
        }
    }

    #[test]
    fn a_full_family_folds_new_label_sets_and_keeps_counting_known_ones() {
        let c: Capped<L, Counter> = Capped::new(Family::default());
        let l = |i: usize, ok: bool| L {
            trigger: Name::new(&format!("t{i}")),
            ok,
        };
        for i in 0..3 * CAP {
            c.with(l(i, i % 2 == 0), |m| {
                m.inc();
            });
        }
        assert_eq!(c.len(), CAP, "the cap holds, folded sets included");
        // The first ones stay themselves; a known set keeps its own counter after the cap.
        c.with(l(0, true), |m| {
            m.inc();
        });
        assert_eq!(c.family.get(&l(0, true)).map(|m| m.get()), Some(2));
        let folded = |ok| {
            c.family
                .get(&L {
                    trigger: Name::other(),
                    ok,
                })
                .map(|m| m.get())
        };
        // CAP - 2 real sets were admitted; the rest, half of each kind, folded.
        let admitted = (CAP - 2) as u64;
        assert_eq!(
            folded(true).unwrap_or(0) + folded(false).unwrap_or(0),
            3 * CAP as u64 - admitted
        );
        assert!(folded(true).is_some() && folded(false).is_some());
    }
}

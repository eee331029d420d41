//! Time zone names: [`parse_timezone`] accepts the IANA names `chrono-tz` knows and, for a
//! misspelt one, suggests the closest known name (or the zone a common abbreviation stands for),
//! at a cost bounded by the zones' lengths however long the name is.

use std::str::FromStr;

use chrono_tz::{TZ_VARIANTS, Tz};

use super::ScheduleError;

/// Parses an IANA time zone name such as `Europe/Berlin`, suggesting the closest known name
/// when it is misspelt.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone {
        name: name.to_owned(),
        suggestion: suggest_timezone(name),
    })
}

/// The known zone name closest to `name` by edit distance, ignoring case; for a common
/// abbreviation such as `PST`, the zone it usually stands for; else a well-known zone.
fn suggest_timezone(name: &str) -> String {
    /// Abbreviations people write that are not themselves tzdb names.
    const ABBREVIATIONS: [(&str, &str); 18] = [
        ("pst", "America/Los_Angeles"),
        ("pdt", "America/Los_Angeles"),
        ("edt", "America/New_York"),
        ("cst", "America/Chicago"),
        ("cdt", "America/Chicago"),
        ("mdt", "America/Denver"),
        ("akst", "America/Anchorage"),
        ("akdt", "America/Anchorage"),
        ("bst", "Europe/London"),
        ("cest", "Europe/Berlin"),
        ("eest", "Europe/Athens"),
        ("ist", "Asia/Kolkata"),
        ("jst", "Asia/Tokyo"),
        ("kst", "Asia/Seoul"),
        ("aest", "Australia/Sydney"),
        ("aedt", "Australia/Sydney"),
        ("nzst", "Pacific/Auckland"),
        ("nzdt", "Pacific/Auckland"),
    ];
    let wanted = name.trim().to_lowercase();
    if let Some((_, zone)) = ABBREVIATIONS.iter().find(|(abbr, _)| *abbr == wanted) {
        return (*zone).to_owned();
    }
    let wanted_has_area = wanted.contains('/');
    // Short names are too easy to match by accident ("PST" is one edit from "EST").
    let length = wanted.chars().count();
    let limit = if length <= 4 { 0 } else { (length / 4).max(1) };
    // The distance is at least the difference in length, so a name whose length is beyond the
    // limit from a zone's is not compared with it: a megabyte-long name in a manifest costs
    // one pass over the zones instead of a megabyte of work for each of them.
    let distance = |known: &str| {
        let reachable = known.chars().count().abs_diff(length) <= limit;
        if reachable {
            levenshtein(&wanted, known)
        } else {
            usize::MAX
        }
    };
    // Ranked by distance, then preferring a whole-name match to a city-only one.
    let mut best: Option<((usize, bool), &'static str)> = None;
    for tz in TZ_VARIANTS.iter() {
        let known = tz.name();
        let lower = known.to_lowercase();
        let mut rank = (distance(&lower), false);
        if !wanted_has_area {
            // Let "Tokyo" find "Asia/Tokyo".
            if let Some((_, city)) = lower.rsplit_once('/') {
                rank = rank.min((distance(city), true));
            }
        }
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, known));
        }
    }
    match best {
        Some(((distance, _), known)) if distance <= limit => known.to_owned(),
        _ => "America/New_York".to_owned(),
    }
}

/// The edit distance (insertions, deletions, substitutions) between two strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_zone_names_are_refused_without_comparing_them() {
        // Found by tests/props.rs: a 4 KiB name took seconds and a 1 MiB one hours, because
        // it was compared by edit distance with every zone name.
        let long = "Europe/".repeat(150_000);
        match parse_timezone(&long) {
            Err(ScheduleError::UnknownTimeZone { suggestion, .. }) => {
                assert_eq!(suggestion, "America/New_York");
            }
            other => panic!("a 1 MiB zone name gave {other:?}"),
        }
        // Near misses of ordinary length still get the zone they meant.
        for (name, want) in [
            ("Europe/Berln", "Europe/Berlin"),
            ("Tokio", "Asia/Tokyo"),
            ("america/new_yrok", "America/New_York"),
            ("PST", "America/Los_Angeles"),
        ] {
            assert_eq!(suggest_timezone(name), want, "{name}");
        }
    }

    #[test]
    fn levenshtein_distances() {
        let cases = [
            ("", "", 0),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
            ("tokio", "tokyo", 1),
        ];
        for (a, b, want) in cases {
            assert_eq!(levenshtein(a, b), want, "{a} {b}");
        }
    }
}

//! The rotator's bookkeeping in Key Vault tags: how progress survives a crash.
//!
//! Each version the rotator writes carries its own state, so the latest version always says
//! which password it is and how far its rotation got. Key Vault allows 15 tags of at most 256
//! characters per value; the rotator uses 7. Tags it does not own are kept untouched.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::planner::{Phase, RotationTags};

pub const MANAGED_BY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "secret-rotator";
pub const CREDENTIAL: &str = "rotator-credential";
pub const KEY_ID: &str = "rotator-key-id";
pub const PREVIOUS_KEY_ID: &str = "rotator-previous-key-id";
pub const PHASE: &str = "rotator-phase";
pub const ROTATED_AT: &str = "rotator-rotated-at";
pub const REMOVE_AFTER: &str = "rotator-remove-after";
pub const SYNCED: &str = "rotator-synced";

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Stored => "stored",
        Phase::Propagated => "propagated",
        Phase::Retired => "retired",
    }
}

/// Reads the rotator's tags. `Ok(None)`: the version carries none (not written by the rotator).
/// `Err`: it carries some but they are damaged (hand-edited): the message names the tag.
pub fn parse(tags: &BTreeMap<String, String>) -> Result<Option<RotationTags>, String> {
    let Some(key_id) = tags.get(KEY_ID) else {
        return Ok(None);
    };
    let key_id = Uuid::parse_str(key_id).map_err(|_| format!("tag {KEY_ID} is not a GUID"))?;
    let previous_key_id = match tags.get(PREVIOUS_KEY_ID).map(String::as_str) {
        None | Some("") => None,
        Some(s) => {
            Some(Uuid::parse_str(s).map_err(|_| format!("tag {PREVIOUS_KEY_ID} is not a GUID"))?)
        }
    };
    let phase = match tags.get(PHASE).map(String::as_str) {
        Some("stored") => Phase::Stored,
        Some("propagated") => Phase::Propagated,
        Some("retired") => Phase::Retired,
        other => {
            return Err(format!(
                "tag {PHASE} is {:?}, expected stored, propagated or retired",
                other.unwrap_or("missing")
            ));
        }
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        match tags.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|_| format!("tag {name} is not an RFC 3339 time")),
        }
    };
    let synced = tags
        .get(SYNCED)
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(RotationTags {
        key_id,
        previous_key_id,
        phase,
        rotated_at: time(ROTATED_AT)?,
        remove_after: time(REMOVE_AFTER)?,
        synced,
    }))
}

/// Writes the rotator's tags over `base`, keeping tags it does not own.
pub fn render(
    base: &BTreeMap<String, String>,
    credential: &str,
    t: &RotationTags,
) -> BTreeMap<String, String> {
    let mut out = base.clone();
    let fmt = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
    out.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    out.insert(CREDENTIAL.into(), credential.into());
    out.insert(KEY_ID.into(), t.key_id.to_string());
    match t.previous_key_id {
        Some(p) => out.insert(PREVIOUS_KEY_ID.into(), p.to_string()),
        None => out.remove(PREVIOUS_KEY_ID),
    };
    out.insert(PHASE.into(), phase_str(t.phase).into());
    match t.rotated_at {
        Some(d) => out.insert(ROTATED_AT.into(), fmt(d)),
        None => out.remove(ROTATED_AT),
    };
    match t.remove_after {
        Some(d) => out.insert(REMOVE_AFTER.into(), fmt(d)),
        None => out.remove(REMOVE_AFTER),
    };
    out.insert(SYNCED.into(), t.synced.join(","));
    out
}

pub fn phase_name(p: Phase) -> &'static str {
    phase_str(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_round_trips_and_keeps_foreign_tags() {
        let t = RotationTags {
            key_id: Uuid::new_v4(),
            previous_key_id: Some(Uuid::new_v4()),
            phase: Phase::Stored,
            rotated_at: Some(
                DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
                    .unwrap()
                    .into(),
            ),
            remove_after: None,
            synced: vec!["0a1b2c3d".into(), "deadbeef".into()],
        };
        let mut base = BTreeMap::new();
        base.insert("owner".to_string(), "team-a".to_string());
        let tags = render(&base, "pa", &t);
        assert_eq!(tags.get("owner").map(String::as_str), Some("team-a"));
        assert_eq!(parse(&tags).unwrap(), Some(t));
    }

    #[test]
    fn damaged_tags_name_the_tag() {
        let mut tags = BTreeMap::new();
        tags.insert(KEY_ID.to_string(), "not-a-guid".to_string());
        assert!(parse(&tags).unwrap_err().contains(KEY_ID));
        tags.insert(KEY_ID.to_string(), Uuid::new_v4().to_string());
        tags.insert(PHASE.to_string(), "weird".to_string());
        assert!(parse(&tags).unwrap_err().contains(PHASE));
        assert_eq!(parse(&BTreeMap::new()).unwrap(), None);
    }
}

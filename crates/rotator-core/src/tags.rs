//! The rotator's bookkeeping in Key Vault tags: how progress survives a crash.
//!
//! Each version the rotator writes carries its own state, so the latest version always says
//! which password it is and how far its rotation got. Tags it does not own are kept untouched
//! and never dropped.
//!
//! # The tag budget
//!
//! Key Vault allows 15 tags per secret ("Key Vault supports up to 15 tags", *About Azure Key
//! Vault secrets*, learn.microsoft.com/azure/key-vault/secrets/about-secrets#secret-tags); the
//! page gives 512 characters per name and value today and gave 256 before (keys still say 256),
//! so the rotator keeps every value within [`VALUE_BUDGET`] = 256. Its state takes one of two
//! forms, chosen per write from the room the owner's tags leave:
//!
//! - **readable** (up to 8 tags, `managed-by` and `rotator-*`) when they fit next to the
//!   owner's tags;
//! - **compact**: one tag, [`STATE`], when they do not (`v1|phase|key|previous|rotated|remove
//!   after|synced`, times as Unix seconds). With 15 owner tags there is no room at all: the
//!   write is refused with a message naming the problem, before any password is created.
//!
//! `rotator-synced` lists the ids ([`ConsumerId`], 16 hex characters) of the consumers known
//! to hold the version while the list fits the budget (15 consumers); past that it becomes a
//! bitmap over the policy's consumers, `@{digest of their ids}:{hex}`, good for ~980. Only
//! ids of the policy's current consumers count: an id of a consumer no longer listed, an id
//! of the first versions (8 hex characters, shared by consumers in different subscriptions)
//! or a bitmap written under another consumer list reads as "not synced", and consumers that
//! cannot be read back are then written again (each write is idempotent).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::planner::{Phase, RotationTags};
use crate::policy::{ConsumerId, CredentialPolicy};

pub const MANAGED_BY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "secret-rotator";
pub const CREDENTIAL: &str = "rotator-credential";
pub const KEY_ID: &str = "rotator-key-id";
pub const PREVIOUS_KEY_ID: &str = "rotator-previous-key-id";
pub const PHASE: &str = "rotator-phase";
pub const ROTATED_AT: &str = "rotator-rotated-at";
pub const REMOVE_AFTER: &str = "rotator-remove-after";
pub const SYNCED: &str = "rotator-synced";
/// The compact form: the whole state in one tag.
pub const STATE: &str = "rotator-state";

/// Tags per Key Vault secret.
pub const MAX_TAGS: usize = 15;
/// The longest tag value the rotator writes.
pub const VALUE_BUDGET: usize = 256;

fn phase_str(p: Phase) -> &'static str {
    match p {
        Phase::Stored => "stored",
        Phase::Propagated => "propagated",
        Phase::Retired => "retired",
    }
}

fn phase_of(s: Option<&str>) -> Result<Phase, String> {
    match s {
        Some("stored") => Ok(Phase::Stored),
        Some("propagated") => Ok(Phase::Propagated),
        Some("retired") => Ok(Phase::Retired),
        other => Err(format!(
            "tag {PHASE} is {:?}, expected stored, propagated or retired",
            other.unwrap_or("missing")
        )),
    }
}

/// Whether a tag is the rotator's (everything else is the owner's).
pub fn is_rotator_tag(name: &str) -> bool {
    name.starts_with("rotator-") || name == MANAGED_BY
}

/// The password the tags name, in either form, without checking the rest.
pub fn key_id(tags: &BTreeMap<String, String>) -> Option<Uuid> {
    match tags.get(STATE) {
        Some(state) => state
            .split('|')
            .nth(2)
            .and_then(|k| Uuid::parse_str(k).ok()),
        None => tags.get(KEY_ID).and_then(|k| Uuid::parse_str(k).ok()),
    }
}

/// Reads the rotator's tags. `Ok(None)`: the version carries none (not written by the rotator).
/// `Err`: it carries some but they are damaged (hand-edited): the message names the tag.
pub fn parse(
    tags: &BTreeMap<String, String>,
    cred: &CredentialPolicy,
) -> Result<Option<RotationTags>, String> {
    if let Some(state) = tags.get(STATE) {
        return parse_compact(state, cred).map(Some);
    }
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
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        match tags.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|_| format!("tag {name} is not an RFC 3339 time")),
        }
    };
    Ok(Some(RotationTags {
        key_id,
        previous_key_id,
        phase: phase_of(tags.get(PHASE).map(String::as_str))?,
        rotated_at: time(ROTATED_AT)?,
        remove_after: time(REMOVE_AFTER)?,
        synced: decode_synced(tags.get(SYNCED).map(String::as_str).unwrap_or(""), cred),
    }))
}

fn parse_compact(state: &str, cred: &CredentialPolicy) -> Result<RotationTags, String> {
    let bad = |what: &str| format!("tag {STATE} is damaged ({what})");
    let f: Vec<&str> = state.splitn(7, '|').collect();
    let [version, phase, key, previous, rotated, remove_after, synced] = f.as_slice() else {
        return Err(bad("expected 7 fields"));
    };
    if *version != "v1" {
        return Err(bad("unknown version"));
    }
    let uuid = |s: &str, what: &str| Uuid::parse_str(s).map_err(|_| bad(what));
    let time = |s: &str, what: &str| -> Result<Option<DateTime<Utc>>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        let secs: i64 = s.parse().map_err(|_| bad(what))?;
        DateTime::from_timestamp(secs, 0)
            .map(Some)
            .ok_or_else(|| bad(what))
    };
    Ok(RotationTags {
        key_id: uuid(key, "key id")?,
        previous_key_id: match *previous {
            "" => None,
            p => Some(uuid(p, "previous key id")?),
        },
        phase: phase_of(Some(phase)).map_err(|_| bad("phase"))?,
        rotated_at: time(rotated, "rotated-at")?,
        remove_after: time(remove_after, "remove-after")?,
        synced: decode_synced(synced, cred),
    })
}

/// Writes the rotator's tags over `base`, keeping every tag it does not own, in the readable
/// form when it fits next to them and the compact one otherwise. `Err` when not even one tag
/// is left for the rotator, or the synced list cannot fit.
pub fn render(
    base: &BTreeMap<String, String>,
    cred: &CredentialPolicy,
    t: &RotationTags,
) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = base
        .iter()
        .filter(|(k, _)| !is_rotator_tag(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let owners = out.len();
    let readable = readable(cred, t)?;
    if owners + readable.len() <= MAX_TAGS {
        out.extend(readable);
        return Ok(out);
    }
    if owners + 1 > MAX_TAGS {
        return Err(format!(
            "Key Vault secret {}/{} carries {owners} tags of its own, Key Vault's maximum: the rotator \
             needs one more for its state. Remove one of the secret's tags (the rotator never drops them)",
            cred.key_vault.vault, cred.key_vault.secret
        ));
    }
    out.insert(STATE.into(), compact(cred, t)?);
    Ok(out)
}

/// Checks before anything is created that the rotator's state will fit next to `base`.
pub fn check_room(base: &BTreeMap<String, String>, cred: &CredentialPolicy) -> Result<(), String> {
    let probe = RotationTags {
        key_id: Uuid::nil(),
        previous_key_id: Some(Uuid::nil()),
        phase: Phase::Stored,
        rotated_at: DateTime::from_timestamp(4_102_444_800, 0),
        remove_after: None,
        synced: Vec::new(),
    };
    render(base, cred, &probe).map(|_| ())
}

fn readable(cred: &CredentialPolicy, t: &RotationTags) -> Result<BTreeMap<String, String>, String> {
    let fmt = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut out = BTreeMap::new();
    out.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    out.insert(CREDENTIAL.into(), cred.name.clone());
    out.insert(KEY_ID.into(), t.key_id.to_string());
    if let Some(p) = t.previous_key_id {
        out.insert(PREVIOUS_KEY_ID.into(), p.to_string());
    }
    out.insert(PHASE.into(), phase_str(t.phase).into());
    if let Some(d) = t.rotated_at {
        out.insert(ROTATED_AT.into(), fmt(d));
    }
    if let Some(d) = t.remove_after {
        out.insert(REMOVE_AFTER.into(), fmt(d));
    }
    out.insert(SYNCED.into(), encode_synced(&t.synced, cred, VALUE_BUDGET)?);
    Ok(out)
}

fn compact(cred: &CredentialPolicy, t: &RotationTags) -> Result<String, String> {
    let secs = |d: Option<DateTime<Utc>>| d.map(|d| d.timestamp().to_string()).unwrap_or_default();
    let head = format!(
        "v1|{}|{}|{}|{}|{}|",
        phase_str(t.phase),
        t.key_id,
        t.previous_key_id.map(|p| p.to_string()).unwrap_or_default(),
        secs(t.rotated_at),
        secs(t.remove_after)
    );
    let synced = encode_synced(&t.synced, cred, VALUE_BUDGET.saturating_sub(head.len()))?;
    Ok(head + &synced)
}

/// FNV-1a over the policy's consumer ids, in order: which list a bitmap is about.
fn digest(ids: &[ConsumerId]) -> String {
    let list: Vec<&str> = ids.iter().map(ConsumerId::as_str).collect();
    let mut h: u32 = 0x811c9dc5;
    for b in list.join(",").as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    format!("{h:08x}")
}

fn encode_synced(
    synced: &[ConsumerId],
    cred: &CredentialPolicy,
    budget: usize,
) -> Result<String, String> {
    let list: Vec<&str> = synced.iter().map(ConsumerId::as_str).collect();
    let list = list.join(",");
    if list.len() <= budget {
        return Ok(list);
    }
    let ids: Vec<ConsumerId> = cred.consumers.iter().map(|c| c.id()).collect();
    let mut nibbles = vec![0u8; ids.len().div_ceil(4)];
    for (i, id) in ids.iter().enumerate() {
        if synced.contains(id) {
            nibbles[i / 4] |= 1 << (i % 4);
        }
    }
    let hex: String = nibbles.iter().map(|n| format!("{n:x}")).collect();
    let bitmap = format!("@{}:{hex}", digest(&ids));
    if bitmap.len() <= budget {
        Ok(bitmap)
    } else {
        Err(format!(
            "{} has {} consumers: more than the rotator's state can record in a Key Vault tag; split it",
            cred.name,
            ids.len()
        ))
    }
}

/// The ids of the policy's consumers the value records; anything else (an id of a consumer
/// no longer listed, of the first versions' kind, a bitmap of another list) counts for none.
fn decode_synced(value: &str, cred: &CredentialPolicy) -> Vec<ConsumerId> {
    let ids: Vec<ConsumerId> = cred.consumers.iter().map(|c| c.id()).collect();
    let Some(bitmap) = value.strip_prefix('@') else {
        return value
            .split(',')
            .filter_map(ConsumerId::parse)
            .filter(|id| ids.contains(id))
            .collect();
    };
    let Some((d, hex)) = bitmap.split_once(':') else {
        return Vec::new();
    };
    if d != digest(&ids) {
        return Vec::new();
    }
    let bits: Vec<u8> = hex
        .chars()
        .map(|c| c.to_digit(16).unwrap_or(0) as u8)
        .collect();
    ids.into_iter()
        .enumerate()
        .filter(|(i, _)| bits.get(i / 4).is_some_and(|n| n & (1 << (i % 4)) != 0))
        .map(|(_, id)| id)
        .collect()
}

pub fn phase_name(p: Phase) -> &'static str {
    phase_str(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential with `n` app-setting consumers on one site.
    fn cred(n: usize) -> CredentialPolicy {
        let consumers: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "type": "appSettingValue",
                    "site": "/subscriptions/7c9e6679-7425-40de-944b-e07fc1f90ae7/resourceGroups/rg/providers/Microsoft.Web/sites/site-one",
                    "setting": format!("Secret{i}")
                })
            })
            .collect();
        let policy = serde_json::json!({"credentials": [{
            "name": "pa",
            "application": {"appId": "7412f649-8e14-471f-bfc1-733b36a42705"},
            "keyVault": {"vault": "kv-pa", "secret": "appSecret"},
            "consumers": consumers
        }]});
        crate::policy::parse("p.json", &policy.to_string())
            .unwrap()
            .credentials
            .remove(0)
    }

    fn state(synced: Vec<ConsumerId>) -> RotationTags {
        RotationTags {
            key_id: Uuid::new_v4(),
            previous_key_id: Some(Uuid::new_v4()),
            phase: Phase::Propagated,
            rotated_at: Some(
                DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
                    .unwrap()
                    .into(),
            ),
            remove_after: Some(
                DateTime::parse_from_rfc3339("2026-11-29T02:00:00Z")
                    .unwrap()
                    .into(),
            ),
            synced,
        }
    }

    fn owner_tags(n: usize) -> BTreeMap<String, String> {
        (0..n)
            .map(|i| (format!("owner-tag-{i}"), "x".repeat(200)))
            .collect()
    }

    fn fits(tags: &BTreeMap<String, String>) -> bool {
        tags.len() <= MAX_TAGS && tags.values().all(|v| v.len() <= VALUE_BUDGET)
    }

    #[test]
    fn render_then_parse_round_trips_and_keeps_foreign_tags() {
        let c = cred(2);
        let t = state(c.consumers.iter().map(|c| c.id()).collect());
        let mut base = BTreeMap::new();
        base.insert("owner".to_string(), "team-a".to_string());
        let tags = render(&base, &c, &t).unwrap();
        assert_eq!(tags.get("owner").map(String::as_str), Some("team-a"));
        assert!(tags.contains_key(KEY_ID), "readable form: {tags:?}");
        assert_eq!(parse(&tags, &c).unwrap(), Some(t));
    }

    #[test]
    fn next_to_eight_owner_tags_the_state_takes_one_tag_and_every_owner_tag_stays() {
        let c = cred(3);
        let base = owner_tags(8);
        let t = state(vec![c.consumers[1].id()]);
        let tags = render(&base, &c, &t).unwrap();
        assert!(fits(&tags), "{tags:?}");
        assert!(base.iter().all(|(k, v)| tags.get(k) == Some(v)));
        assert_eq!(tags.len(), 9, "{tags:?}");
        assert_eq!(parse(&tags, &c).unwrap(), Some(t.clone()));
        assert_eq!(key_id(&tags), Some(t.key_id));
        // Back to the readable form once the owner removes tags; no stale tag is left.
        let again = render(&owner_tags(2), &c, &t).unwrap();
        assert!(!again.contains_key(STATE) && again.contains_key(KEY_ID));
        assert_eq!(parse(&again, &c).unwrap(), Some(t));
    }

    #[test]
    fn fourteen_owner_tags_still_fit_and_fifteen_are_named() {
        let c = cred(1);
        let t = state(vec![c.consumers[0].id()]);
        let tags = render(&owner_tags(14), &c, &t).unwrap();
        assert!(fits(&tags));
        assert_eq!(parse(&tags, &c).unwrap(), Some(t.clone()));
        let err = render(&owner_tags(15), &c, &t).unwrap_err();
        assert!(err.contains("carries 15 tags of its own"), "{err}");
        assert!(check_room(&owner_tags(15), &c).is_err());
        assert!(check_room(&owner_tags(14), &c).is_ok());
    }

    #[test]
    fn many_consumers_fit_the_value_limit_in_both_forms() {
        for n in [28, 29, 60, 400] {
            let c = cred(n);
            let t = state(c.consumers.iter().map(|c| c.id()).step_by(2).collect());
            for owners in [0, 8, 14] {
                let tags = render(&owner_tags(owners), &c, &t).unwrap();
                assert!(fits(&tags), "{n} consumers, {owners} owner tags: {tags:?}");
                let back = parse(&tags, &c).unwrap().unwrap();
                let mut want = t.synced.clone();
                want.sort();
                let mut got = back.synced.clone();
                got.sort();
                assert_eq!(got, want, "{n} consumers, {owners} owner tags");
            }
        }
        // A bitmap written for another consumer list says nothing is synced.
        let c = cred(60);
        let tags = render(&BTreeMap::new(), &c, &state(vec![c.consumers[0].id(); 40])).unwrap();
        assert!(parse(&tags, &cred(61)).unwrap().unwrap().synced.is_empty());
    }

    /// After an upgrade from the first versions (ids of 8 hex characters, from the display
    /// text, shared by consumers in different subscriptions), no recorded id counts: every
    /// consumer that cannot be read back is written again, never skipped.
    #[test]
    fn ids_of_the_first_versions_and_of_other_consumers_count_for_none() {
        let c = cred(2);
        let mut tags = render(&BTreeMap::new(), &c, &state(Vec::new())).unwrap();
        let ours = c.consumers[1].id().to_string();
        tags.insert(
            SYNCED.to_string(),
            format!("91102477,0123456789abcdef,{ours},not-an-id"),
        );
        let back = parse(&tags, &c).unwrap().unwrap();
        assert_eq!(back.synced, vec![c.consumers[1].id()]);
        let compact = format!(
            "v1|stored|{}||1763776800||91102477,a5f3c2e1",
            Uuid::new_v4()
        );
        let tags = BTreeMap::from([(STATE.to_string(), compact)]);
        assert!(parse(&tags, &c).unwrap().unwrap().synced.is_empty());
    }

    #[test]
    fn damaged_tags_name_the_tag() {
        let c = cred(1);
        let mut tags = BTreeMap::new();
        tags.insert(KEY_ID.to_string(), "not-a-guid".to_string());
        assert!(parse(&tags, &c).unwrap_err().contains(KEY_ID));
        tags.insert(KEY_ID.to_string(), Uuid::new_v4().to_string());
        tags.insert(PHASE.to_string(), "weird".to_string());
        assert!(parse(&tags, &c).unwrap_err().contains(PHASE));
        assert_eq!(parse(&BTreeMap::new(), &c).unwrap(), None);
        let damaged = BTreeMap::from([(STATE.to_string(), "v1|stored|nope".to_string())]);
        assert!(parse(&damaged, &c).unwrap_err().contains(STATE));
    }
}

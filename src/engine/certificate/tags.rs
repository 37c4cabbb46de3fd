//! The certificate path's bookkeeping in the Key Vault *certificate version's* tags, the way
//! the secret path keeps its own on secret versions (`rotator_core::tags`): who made the
//! version, and on the version consumers are meant to hold, the rotation's state. Parse, then
//! apply: [`parse`] reads a version's tags into the planner's types, [`render`] writes state
//! over the tags a version carries, keeping every tag the rotator does not own.
//!
//! Tags:
//! - origin: `rotator-requested` (the rotator's `create`) or `rotator-adopted` (Key Vault's
//!   auto-renewal, taken up);
//! - state, readable: `managed-by`, `rotator-credential`, `rotator-key-id`,
//!   `rotator-previous-key-id`, `rotator-phase`, `rotator-remove-after`, `rotator-synced`
//!   (consumer ids), `rotator-conversion` (`released:{unix}` or `converted`); or, when the
//!   owner's tags leave no room for those, compact in one tag `rotator-state`
//!   (`c1|phase|key|previous|remove-after|conversion|synced`);
//! - `rotator-add-refused`: `{kind}|{unix}|{Graph's words}`, Graph's refusal of this version's
//!   key, so the next runs do not ask again for [`REFUSAL_RETRY`].
//!
//! Key Vault allows 15 tags per object ("About Azure Key Vault certificates" and the secrets
//! page's "Key Vault supports up to 15 tags"; the emulator refuses a 16th as Key Vault does):
//! the owner's tags are never dropped, so with 14 of them the write is refused with a message.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use uuid::Uuid;

use crate::engine::tags::{MANAGED_BY, MANAGED_BY_VALUE, MAX_TAGS, VALUE_BUDGET, is_rotator_tag};
use crate::planner::Phase;
use crate::planner::certificate::{
    AddRefusalKind, CertRotationTags, ConversionPhase, VersionOrigin,
};
use crate::policy::{CertificateCredentialPolicy, ConsumerId};

pub const REQUESTED: &str = "rotator-requested";
pub const ADOPTED: &str = "rotator-adopted";
pub const CREDENTIAL: &str = "rotator-credential";
pub const KEY_ID: &str = "rotator-key-id";
pub const PREVIOUS_KEY_ID: &str = "rotator-previous-key-id";
pub const PHASE: &str = "rotator-phase";
pub const REMOVE_AFTER: &str = "rotator-remove-after";
pub const SYNCED: &str = "rotator-synced";
pub const CONVERSION: &str = "rotator-conversion";
pub const STATE: &str = "rotator-state";
pub const ADD_REFUSED: &str = "rotator-add-refused";
/// How long a recorded refusal of a version's key stands before the rotator asks Graph again
/// (a person may have lifted the policy or freed a slot meanwhile).
pub const REFUSAL_RETRY: Duration = Duration::hours(24);

/// What one version's tags say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTags {
    pub origin: VersionOrigin,
    pub state: Option<CertRotationTags>,
    pub refused: Option<(AddRefusalKind, DateTime<Utc>, String)>,
}

fn phase_str(p: Phase) -> &'static str {
    crate::engine::tags::phase_name(p)
}

fn phase_of(s: &str) -> Result<Phase, String> {
    match s {
        "stored" => Ok(Phase::Stored),
        "propagated" => Ok(Phase::Propagated),
        "retired" => Ok(Phase::Retired),
        _ => Err(format!("tag {PHASE} is not stored, propagated or retired")),
    }
}

fn kind_str(k: AddRefusalKind) -> &'static str {
    match k {
        AddRefusalKind::KeyCredentialLimit => "limit",
        AddRefusalKind::LifetimePolicy => "lifetime",
        AddRefusalKind::UntrustedIssuer => "issuer",
        AddRefusalKind::Other => "other",
    }
}

fn kind_of(s: &str) -> AddRefusalKind {
    match s {
        "limit" => AddRefusalKind::KeyCredentialLimit,
        "lifetime" => AddRefusalKind::LifetimePolicy,
        "issuer" => AddRefusalKind::UntrustedIssuer,
        _ => AddRefusalKind::Other,
    }
}

fn conversion_str(c: Option<ConversionPhase>) -> String {
    match c {
        None => String::new(),
        Some(ConversionPhase::SecretReleased { remove_after }) => {
            format!("released:{}", remove_after.timestamp())
        }
        Some(ConversionPhase::Converted) => "converted".into(),
    }
}

fn conversion_of(s: &str) -> Result<Option<ConversionPhase>, String> {
    let bad = || format!("tag {CONVERSION} is not released:{{unix}} or converted");
    match s {
        "" => Ok(None),
        "converted" => Ok(Some(ConversionPhase::Converted)),
        other => {
            let secs = other.strip_prefix("released:").ok_or_else(bad)?;
            let t = secs
                .parse()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0));
            Ok(Some(ConversionPhase::SecretReleased {
                remove_after: t.ok_or_else(bad)?,
            }))
        }
    }
}

fn uuid(s: &str, tag: &str) -> Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|_| format!("tag {tag} is not a GUID"))
}

fn opt_uuid(s: Option<&str>, tag: &str) -> Result<Option<Uuid>, String> {
    s.filter(|s| !s.is_empty())
        .map(|s| uuid(s, tag))
        .transpose()
}

fn synced_of(s: &str, policy: &CertificateCredentialPolicy) -> Vec<ConsumerId> {
    let ids: Vec<ConsumerId> = policy.consumers.iter().map(|c| c.id()).collect();
    s.split(',')
        .filter_map(ConsumerId::parse)
        .filter(|id| ids.contains(id))
        .collect()
}

/// Reads a version's tags. `Err` names the damaged tag (hand-edited).
pub fn parse(
    tags: &BTreeMap<String, String>,
    policy: &CertificateCredentialPolicy,
) -> Result<VersionTags, String> {
    let state = match tags.get(STATE) {
        Some(s) => Some(parse_compact(s, policy)?),
        None => parse_readable(tags, policy)?,
    };
    let origin = if tags.contains_key(REQUESTED) {
        VersionOrigin::Requested
    } else if tags.contains_key(ADOPTED) || state.is_some() {
        VersionOrigin::Adopted
    } else {
        VersionOrigin::Unknown
    };
    let refused = tags.get(ADD_REFUSED).and_then(|r| {
        let mut f = r.splitn(3, '|');
        let kind = kind_of(f.next()?);
        let at = DateTime::from_timestamp(f.next()?.parse().ok()?, 0)?;
        Some((kind, at, f.next().unwrap_or_default().to_string()))
    });
    Ok(VersionTags {
        origin,
        state,
        refused,
    })
}

fn parse_readable(
    tags: &BTreeMap<String, String>,
    policy: &CertificateCredentialPolicy,
) -> Result<Option<CertRotationTags>, String> {
    let Some(key) = tags.get(KEY_ID) else {
        return Ok(None);
    };
    let get = |k: &str| tags.get(k).map(String::as_str);
    let remove_after = match get(REMOVE_AFTER).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| format!("tag {REMOVE_AFTER} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    Ok(Some(CertRotationTags {
        key_id: uuid(key, KEY_ID)?,
        previous_key_id: opt_uuid(get(PREVIOUS_KEY_ID), PREVIOUS_KEY_ID)?,
        phase: phase_of(get(PHASE).unwrap_or_default())?,
        remove_after,
        synced: synced_of(get(SYNCED).unwrap_or_default(), policy),
        conversion: conversion_of(get(CONVERSION).unwrap_or_default())?,
    }))
}

fn parse_compact(
    s: &str,
    policy: &CertificateCredentialPolicy,
) -> Result<CertRotationTags, String> {
    let bad = |what: &str| format!("tag {STATE} is damaged ({what})");
    let f: Vec<&str> = s.splitn(7, '|').collect();
    let [v, phase, key, prev, remove_after, conversion, synced] = f.as_slice() else {
        return Err(bad("expected 7 fields"));
    };
    if *v != "c1" {
        return Err(bad("unknown version"));
    }
    let remove_after = match *remove_after {
        "" => None,
        t => Some(
            t.parse()
                .ok()
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .ok_or_else(|| bad("remove-after"))?,
        ),
    };
    Ok(CertRotationTags {
        key_id: uuid(key, STATE)?,
        previous_key_id: opt_uuid(Some(prev), STATE)?,
        phase: phase_of(phase).map_err(|_| bad("phase"))?,
        remove_after,
        synced: synced_of(synced, policy),
        conversion: conversion_of(conversion).map_err(|_| bad("conversion"))?,
    })
}

fn synced_str(t: &CertRotationTags, budget: usize) -> Result<String, String> {
    let s: Vec<&str> = t.synced.iter().map(ConsumerId::as_str).collect();
    let s = s.join(",");
    if s.len() <= budget {
        Ok(s)
    } else {
        Err(format!(
            "{} consumers are more than the rotator's state can record in a Key Vault tag; split the credential",
            t.synced.len()
        ))
    }
}

/// `base` with the origin and `state` written over it (`None`: only the origin), every tag
/// the rotator does not own kept. `Err` when they do not fit Key Vault's 15 tags.
pub fn render(
    base: &BTreeMap<String, String>,
    policy: &CertificateCredentialPolicy,
    origin: VersionOrigin,
    state: Option<&CertRotationTags>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out: BTreeMap<String, String> = base
        .iter()
        .filter(|(k, _)| !is_rotator_tag(k) || k.as_str() == ADD_REFUSED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match origin {
        VersionOrigin::Requested => out.insert(REQUESTED.into(), "true".into()),
        VersionOrigin::Adopted => out.insert(ADOPTED.into(), "true".into()),
        VersionOrigin::Unknown => None,
    };
    let Some(t) = state else {
        return fits(out, policy);
    };
    if state.is_some() {
        out.remove(ADD_REFUSED);
    }
    let fmt = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut readable = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (CREDENTIAL.to_string(), policy.name.clone()),
        (KEY_ID.to_string(), t.key_id.to_string()),
        (PHASE.to_string(), phase_str(t.phase).to_string()),
        (SYNCED.to_string(), synced_str(t, VALUE_BUDGET)?),
    ]);
    if let Some(p) = t.previous_key_id {
        readable.insert(PREVIOUS_KEY_ID.into(), p.to_string());
    }
    if let Some(r) = t.remove_after {
        readable.insert(REMOVE_AFTER.into(), fmt(r));
    }
    if t.conversion.is_some() {
        readable.insert(CONVERSION.into(), conversion_str(t.conversion));
    }
    if out.len() + readable.len() <= MAX_TAGS {
        out.extend(readable);
        return Ok(out);
    }
    let head = format!(
        "c1|{}|{}|{}|{}|{}|",
        phase_str(t.phase),
        t.key_id,
        t.previous_key_id.map(|p| p.to_string()).unwrap_or_default(),
        t.remove_after
            .map(|r| r.timestamp().to_string())
            .unwrap_or_default(),
        conversion_str(t.conversion)
    );
    let synced = synced_str(t, VALUE_BUDGET.saturating_sub(head.len()))?;
    out.insert(STATE.into(), head + &synced);
    fits(out, policy)
}

fn fits(
    out: BTreeMap<String, String>,
    policy: &CertificateCredentialPolicy,
) -> Result<BTreeMap<String, String>, String> {
    if out.len() <= MAX_TAGS {
        return Ok(out);
    }
    let c = &policy.certificate;
    Err(format!(
        "Key Vault certificate {}/{} carries too many tags of its own for the rotator's state \
         (Key Vault's maximum is {MAX_TAGS}); remove one of the version's tags (the rotator never drops them)",
        c.vault, c.name
    ))
}

/// `base` with Graph's refusal of the version's key recorded.
pub fn with_refusal(
    base: &BTreeMap<String, String>,
    kind: AddRefusalKind,
    at: DateTime<Utc>,
    detail: &str,
) -> BTreeMap<String, String> {
    let mut out = base.clone();
    let head = format!("{}|{}|", kind_str(kind), at.timestamp());
    let room = VALUE_BUDGET.saturating_sub(head.len());
    let detail: String = detail.chars().filter(|c| *c != '|').take(room).collect();
    out.insert(ADD_REFUSED.into(), head + &detail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CertificateCredentialPolicy {
        let p = serde_json::json!({"credentials": [{
            "type": "certificate", "name": "pa",
            "application": {"appId": "7412f649-8e14-471f-bfc1-733b36a42705"},
            "certificate": {"vault": "kv-pa", "name": "pa-cert"}, "subject": "CN=pa", "graceDays": 7,
            "consumers": [{"type": "notifyOnly", "system": "x", "instructions": "y"}]
        }]});
        crate::policy::parse("p.json", &p.to_string())
            .unwrap()
            .certificates
            .remove(0)
    }

    fn state(p: &CertificateCredentialPolicy) -> CertRotationTags {
        CertRotationTags {
            key_id: Uuid::new_v4(),
            previous_key_id: Some(Uuid::new_v4()),
            phase: Phase::Propagated,
            remove_after: DateTime::from_timestamp(1_900_000_000, 0),
            synced: vec![p.consumers[0].id()],
            conversion: Some(ConversionPhase::SecretReleased {
                remove_after: DateTime::from_timestamp(1_900_000_100, 0).unwrap(),
            }),
        }
    }

    #[test]
    fn state_round_trips_in_both_forms_and_keeps_the_owners_tags() {
        let p = policy();
        let t = state(&p);
        for owners in [1usize, 10, 13] {
            let base: BTreeMap<String, String> =
                (0..owners).map(|i| (format!("o{i}"), "v".into())).collect();
            let out = render(&base, &p, VersionOrigin::Requested, Some(&t)).unwrap();
            assert!(out.len() <= MAX_TAGS, "{owners}");
            assert!(base.iter().all(|(k, v)| out.get(k) == Some(v)));
            let back = parse(&out, &p).unwrap();
            assert_eq!(back.state.as_ref(), Some(&t), "{owners}");
            assert_eq!(back.origin, VersionOrigin::Requested);
        }
        let full: BTreeMap<String, String> =
            (0..14).map(|i| (format!("o{i}"), "v".into())).collect();
        let e = render(&full, &p, VersionOrigin::Requested, Some(&t)).unwrap_err();
        assert!(e.contains("15"), "{e}");
    }

    #[test]
    fn damaged_tags_are_named_and_refusals_are_read() {
        let p = policy();
        let bad = BTreeMap::from([(KEY_ID.to_string(), "nope".to_string())]);
        assert!(parse(&bad, &p).unwrap_err().contains(KEY_ID));
        let at = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let r = with_refusal(
            &BTreeMap::new(),
            AddRefusalKind::KeyCredentialLimit,
            at,
            "a|b",
        );
        let v = parse(&r, &p).unwrap();
        assert_eq!(v.origin, VersionOrigin::Unknown);
        assert_eq!(
            v.refused,
            Some((AddRefusalKind::KeyCredentialLimit, at, "ab".into()))
        );
    }
}

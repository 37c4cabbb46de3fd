//! Policy JSON -> validated [`Policy`], collecting every error.
//!
//! The text is parsed into a `serde_json::Value` (syntax errors carry line and column), then
//! walked field by field. Each check records a [`PolicyError`] and carries on, so an operator
//! fixes the whole file in one pass. A credential is only turned into a [`CredentialPolicy`] when
//! all of its own fields are valid; cross-credential checks (unique names, one credential per
//! vault secret, one writer per consumer target) run over what parsed.

use std::collections::HashMap;
use std::path::Path;

use chrono::Duration;
use serde_json::{Map, Value};
use uuid::Uuid;

mod certificate;

use super::{
    AppRef, ArmResource, CertificateCredentialPolicy, Consumer, ConsumerId, CredentialPolicy,
    Policy, PolicyError, PolicyErrors, VaultSecretRef,
};

/// The API connection parameter used when a consumer does not name one: the Key Vault
/// connector's service-principal secret.
pub const DEFAULT_CONNECTION_PARAMETER: &str = "token:clientSecret";

const DEFAULT_RENEW_BEFORE_DAYS: i64 = 30;
const DEFAULT_LIFETIME_DAYS: i64 = 180;
const DEFAULT_GRACE_DAYS: i64 = 7;
/// Graph and the portal refuse client secrets longer than 24 months.
const MAX_LIFETIME_DAYS: i64 = 730;
const MAX_GRACE_DAYS: i64 = 90;

/// Key Vault DNS suffixes of the clouds in [`crate::cloud::Cloud`], accepted in `secretUri`.
const KEYVAULT_SUFFIXES: &[&str] = &[
    "vault.azure.net",
    "vault.usgovcloudapi.net",
    "vault.azure.cn",
];

const CONSUMER_TYPES: &[&str] = &[
    "appSettingKeyVaultReference",
    "appSettingValue",
    "apiConnection",
    "automationVariable",
    "notifyOnly",
];

/// Reads and validates a policy file. A file that cannot be read is reported as a single
/// [`PolicyError`] naming the path.
pub fn load(path: impl AsRef<Path>) -> Result<Policy, PolicyErrors> {
    let path = path.as_ref();
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&source, &text),
        Err(e) => Err(PolicyErrors {
            errors: vec![PolicyError {
                source,
                entry: None,
                field: String::new(),
                message: format!("cannot read the policy file: {e}"),
            }],
        }),
    }
}

/// Parses and validates policy text. `source_name` is used in every error message (usually the
/// file name).
pub fn parse(source_name: &str, text: &str) -> Result<Policy, PolicyErrors> {
    let mut cx = Cx {
        source: source_name,
        errors: Vec::new(),
        uri_suffixes: HashMap::new(),
        certificates: Vec::new(),
    };
    // Editors on Windows like to save JSON with a byte-order mark, which serde_json rejects.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            cx.push(
                None,
                "",
                format!(
                    "invalid JSON at line {}, column {}: {}",
                    e.line(),
                    e.column(),
                    strip_position(&e.to_string())
                ),
            );
            return Err(cx.finish());
        }
    };
    cx.duplicate_keys(text, &root);
    let credentials = cx.root(&root);
    if cx.errors.is_empty() {
        Ok(Policy {
            source: source_name.to_string(),
            credentials,
            certificates: cx.certificates.into_iter().map(|(_, c)| c).collect(),
            secret_uri_suffixes: cx.uri_suffixes,
        })
    } else {
        Err(cx.finish())
    }
}

/// Finds object keys given twice: `serde_json::Value` silently keeps the last one, which would
/// hide an edit made to the first (say, a second `lifetimeDays` further down). Yields
/// (path of the object, key), paths like `credentials[0].keyVault`.
fn duplicate_keys(text: &str) -> Vec<(String, String)> {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    use std::collections::HashSet;

    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Vec<(String, String)>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            loop {
                let child = Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                };
                if seq.next_element_seed(child)?.is_none() {
                    return Ok(());
                }
                i += 1;
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    self.found
                        .borrow_mut()
                        .push((self.path.clone(), key.clone()));
                }
                map.next_value_seed(Walk {
                    path: join(&self.path, &key),
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_str(text);
    // The text already parsed as a Value, so this walk cannot fail; if it somehow did, the
    // duplicates found so far are still reported.
    let _ = Walk {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de);
    found.into_inner()
}

/// serde_json appends " at line L column C" to its messages; the position is reported separately.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// The credential entry an error belongs to.
#[derive(Clone)]
struct Entry(String);

impl Entry {
    fn new(index: usize, obj: Option<&Map<String, Value>>) -> Self {
        match obj.and_then(|o| o.get("name")).and_then(Value::as_str) {
            Some(name) if !name.is_empty() => {
                Entry(format!("credentials[{index}] ({})", truncate(name, 64)))
            }
            _ => Entry(format!("credentials[{index}]")),
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Quoted, shortened value for messages (policy files hold no secrets, only names and ids).
fn q(s: &str) -> String {
    format!("'{}'", truncate(s, 200))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A duration field as read: absent, valid days, or invalid (`Err`, already reported).
type DaysField = Result<Option<i64>, ()>;

/// Effective durations (in days) while checking their relations.
#[derive(Clone, Copy)]
struct Days {
    renew_before: Option<i64>,
    lifetime: Option<i64>,
    grace: Option<i64>,
}

struct Cx<'s> {
    source: &'s str,
    errors: Vec<PolicyError>,
    /// The Key Vault suffix of each `secretUri` (see [`Policy::check_cloud`]).
    uri_suffixes: HashMap<VaultSecretRef, String>,
    /// The valid certificate entries, with their entry for the checks across entries.
    certificates: Vec<(Entry, CertificateCredentialPolicy)>,
}

impl Cx<'_> {
    fn push(
        &mut self,
        entry: Option<&Entry>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(PolicyError {
            source: self.source.to_string(),
            entry: entry.map(|e| e.0.clone()),
            field: field.into(),
            message: message.into(),
        });
    }

    fn duplicate_keys(&mut self, text: &str, root: &Value) {
        for (path, key) in duplicate_keys(text) {
            // Attribute it to its credential entry when it is inside one.
            let inside = path.strip_prefix("credentials[").and_then(|rest| {
                let (index, tail) = rest.split_once(']')?;
                let index: usize = index.parse().ok()?;
                Some((index, tail.strip_prefix('.').unwrap_or(tail).to_string()))
            });
            let message = format!("'{key}' is given twice (only the last one would count)");
            match inside {
                Some((index, tail)) => {
                    let obj = root
                        .get("credentials")
                        .and_then(|c| c.get(index))
                        .and_then(Value::as_object);
                    let entry = Entry::new(index, obj);
                    self.push(Some(&entry), tail, message);
                }
                None => self.push(None, path, message),
            }
        }
    }

    fn finish(self) -> PolicyErrors {
        PolicyErrors {
            errors: self.errors,
        }
    }

    /// Rejects fields outside `allowed` (typos must not silently fall back to defaults).
    fn deny_unknown(
        &mut self,
        entry: Option<&Entry>,
        prefix: &str,
        obj: &Map<String, Value>,
        allowed: &[&str],
    ) {
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                self.push(
                    entry,
                    join(prefix, key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }

    fn object<'v>(
        &mut self,
        entry: Option<&Entry>,
        field: &str,
        v: &'v Value,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.push(
                    entry,
                    field,
                    format!("expected an object, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string field; `None` (with an error) when missing and required, or of another type.
    fn string<'v>(
        &mut self,
        entry: Option<&Entry>,
        prefix: &str,
        obj: &'v Map<String, Value>,
        key: &str,
        required: bool,
    ) -> Option<&'v str> {
        match obj.get(key) {
            None => {
                if required {
                    self.push(entry, join(prefix, key), "missing (required)");
                }
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.push(
                    entry,
                    join(prefix, key),
                    format!("expected a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    fn guid(&mut self, entry: Option<&Entry>, field: &str, s: &str) -> Option<Uuid> {
        match parse_guid(s) {
            Ok(u) => Some(u),
            Err(m) => {
                self.push(entry, field, m);
                None
            }
        }
    }

    /// A whole number of days. Outer `Err(())` = present but invalid (already reported).
    fn days(
        &mut self,
        entry: Option<&Entry>,
        prefix: &str,
        obj: &Map<String, Value>,
        key: &str,
    ) -> DaysField {
        let Some(v) = obj.get(key) else {
            return Ok(None);
        };
        let field = join(prefix, key);
        let n = match v {
            Value::Number(n) => n,
            other => {
                self.push(
                    entry,
                    field,
                    format!("expected a whole number of days, got {}", kind(other)),
                );
                return Err(());
            }
        };
        let Some(days) = n.as_i64() else {
            self.push(
                entry,
                field,
                format!("expected a whole number of days, got {n}"),
            );
            return Err(());
        };
        let range_error = match key {
            "renewBeforeDays" if days < 1 => Some(format!("must be at least 1 day, got {days}")),
            "lifetimeDays" if !(1..=MAX_LIFETIME_DAYS).contains(&days) => Some(format!(
                "must be between 1 and {MAX_LIFETIME_DAYS} days (Graph and the portal cap client secrets at 24 months), got {days}"
            )),
            "graceDays" if !(0..=MAX_GRACE_DAYS).contains(&days) => Some(format!(
                "must be between 0 and {MAX_GRACE_DAYS} days, got {days}"
            )),
            _ => None,
        };
        match range_error {
            Some(m) => {
                self.push(entry, field, m);
                Err(())
            }
            None => Ok(Some(days)),
        }
    }

    /// Reads the three durations of an object (defaults or a credential).
    fn durations(
        &mut self,
        entry: Option<&Entry>,
        prefix: &str,
        obj: &Map<String, Value>,
    ) -> (DaysField, DaysField, DaysField) {
        (
            self.days(entry, prefix, obj, "renewBeforeDays"),
            self.days(entry, prefix, obj, "lifetimeDays"),
            self.days(entry, prefix, obj, "graceDays"),
        )
    }

    /// renewBefore < lifetime, and grace < lifetime - renewBefore so the previous password is
    /// removed before the next renewal starts (otherwise two rotations would overlap).
    fn relations(&mut self, entry: Option<&Entry>, prefix: &str, d: Days) {
        let (Some(r), Some(l), Some(g)) = (d.renew_before, d.lifetime, d.grace) else {
            return;
        };
        if r >= l {
            self.push(
                entry,
                join(prefix, "renewBeforeDays"),
                format!(
                    "must be less than lifetimeDays ({r} >= {l}): a new secret would be due for renewal as soon as it is created"
                ),
            );
        } else if g >= l - r {
            self.push(
                entry,
                join(prefix, "graceDays"),
                format!(
                    "must be less than lifetimeDays - renewBeforeDays ({g} >= {l} - {r} = {}) so the old secret is gone before the next renewal",
                    l - r
                ),
            );
        }
    }

    fn root(&mut self, root: &Value) -> Vec<CredentialPolicy> {
        let Some(obj) = self.object(None, "(top level)", root) else {
            return Vec::new();
        };
        self.deny_unknown(None, "", obj, &["$schema", "defaults", "credentials"]);
        if let Some(v) = obj.get("$schema")
            && !v.is_string()
        {
            self.push(
                None,
                "$schema",
                format!("expected a string, got {}", kind(v)),
            );
        }
        let defaults = self.defaults(obj);
        let Some(list) = self.credentials_list(obj) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut seen = Seen::default();
        for (index, item) in list.iter().enumerate() {
            let entry = Entry::new(index, item.as_object());
            let Some(cobj) = self.object(Some(&entry), "", item) else {
                continue;
            };
            match self.entry_kind(&entry, cobj) {
                Some(EntryKind::ClientSecret) => {}
                Some(EntryKind::Certificate) => {
                    self.certificate_checks(&mut seen, &entry, cobj, defaults);
                    continue;
                }
                None => continue,
            }
            // Cross-credential checks run on whatever parts of the entry are valid, so they are
            // reported in the same pass as the entry's own errors.
            let parts = self.credential(&entry, cobj, defaults);
            if let Some(name) = &parts.name {
                seen.secret_credentials.insert(name.clone());
            }
            self.unique_name(&mut seen, &entry, parts.name.as_ref());
            self.unique_secret(&mut seen, &entry, &parts);
            self.unique_consumers(&mut seen, &entry, &parts);
            out.extend(parts.policy);
        }
        self.conversions(&seen, &out);
        out
    }

    /// `type`: `clientSecret` (the default) or `certificate`; `None` (reported) otherwise.
    fn entry_kind(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Option<EntryKind> {
        match obj.get("type") {
            None => Some(EntryKind::ClientSecret),
            Some(Value::String(t)) if t == "clientSecret" => Some(EntryKind::ClientSecret),
            Some(Value::String(t)) if t == "certificate" => Some(EntryKind::Certificate),
            Some(other) => {
                self.push(
                    Some(entry),
                    "type",
                    format!(
                        "expected 'clientSecret' (the default) or 'certificate', got {}",
                        match other {
                            Value::String(t) => q(t),
                            v => kind(v).to_string(),
                        }
                    ),
                );
                None
            }
        }
    }

    /// A certificate entry and its checks across entries: unique name, one credential per Key
    /// Vault certificate, one writer per consumer target.
    fn certificate_checks(
        &mut self,
        seen: &mut Seen,
        entry: &Entry,
        obj: &Map<String, Value>,
        defaults: Days,
    ) {
        let parts = self.certificate_entry(entry, obj, defaults);
        self.unique_name(seen, entry, parts.name.as_ref());
        if let Some(c) = &parts.certificate {
            let key = (c.vault.to_ascii_lowercase(), c.name.to_ascii_lowercase());
            if let Some(first) = seen.certificates.get(&key) {
                self.push(
                    Some(entry),
                    "certificate",
                    format!(
                        "certificate {} in vault {} is already the store of {first}: two credentials cannot share one Key Vault certificate",
                        q(&c.name),
                        q(&c.vault)
                    ),
                );
            } else {
                seen.certificates.insert(key, entry.0.clone());
            }
        }
        let owner = parts.name.clone().unwrap_or_else(|| entry.0.clone());
        for (ci, c) in &parts.consumers {
            let key = certificate_target_key(c, &owner);
            self.claim_target(seen, entry, *ci, key, &c.describe());
        }
        if let Some(p) = parts.policy {
            self.certificates.push((entry.clone(), p));
        }
    }

    /// `replacesSecret` names a client-secret credential of the same application, replaced by
    /// one certificate only.
    fn conversions(&mut self, seen: &Seen, secrets: &[CredentialPolicy]) {
        let mut claimed: HashMap<String, String> = HashMap::new();
        let certs: Vec<(Entry, CertificateCredentialPolicy)> = self.certificates.clone();
        for (entry, cert) in &certs {
            let Some(secret) = &cert.replaces_secret else {
                continue;
            };
            let e = Some(entry);
            if !seen.secret_credentials.contains(secret) {
                self.push(
                    e,
                    "replacesSecret",
                    format!(
                        "{} is not a client-secret credential of this file",
                        q(secret)
                    ),
                );
            } else if let Some(s) = secrets.iter().find(|s| &s.name == secret)
                && s.application != cert.application
            {
                self.push(
                    e,
                    "replacesSecret",
                    format!(
                        "{} belongs to another application (give the same application on both entries)",
                        q(secret)
                    ),
                );
            }
            if let Some(first) = claimed.get(secret) {
                self.push(
                    e,
                    "replacesSecret",
                    format!("{} is already being replaced by {first}", q(secret)),
                );
            } else {
                claimed.insert(secret.clone(), entry.0.clone());
            }
        }
    }

    /// `defaults`: each value checked alone; relations checked on the defaults themselves only
    /// once, so a bad default is not repeated for every credential that inherits it.
    fn defaults(&mut self, obj: &Map<String, Value>) -> Days {
        let builtin = Days {
            renew_before: Some(DEFAULT_RENEW_BEFORE_DAYS),
            lifetime: Some(DEFAULT_LIFETIME_DAYS),
            grace: Some(DEFAULT_GRACE_DAYS),
        };
        let Some(dv) = obj.get("defaults") else {
            return builtin;
        };
        let Some(d) = self.object(None, "defaults", dv) else {
            return builtin;
        };
        self.deny_unknown(
            None,
            "defaults",
            d,
            &["renewBeforeDays", "lifetimeDays", "graceDays"],
        );
        let defaults = self.effective_days(None, "defaults", d, builtin);
        self.relations(None, "defaults", defaults);
        defaults
    }

    /// The three durations of an object, each as given, else `inherited`; `None` when invalid.
    fn effective_days(
        &mut self,
        entry: Option<&Entry>,
        prefix: &str,
        obj: &Map<String, Value>,
        inherited: Days,
    ) -> Days {
        let (r, l, g) = self.durations(entry, prefix, obj);
        let pick = |got: DaysField, dflt: Option<i64>| match got {
            Ok(Some(v)) => Some(v),
            Ok(None) => dflt,
            Err(()) => None,
        };
        Days {
            renew_before: pick(r, inherited.renew_before),
            lifetime: pick(l, inherited.lifetime),
            grace: pick(g, inherited.grace),
        }
    }

    /// The required `credentials` array.
    fn credentials_list<'v>(&mut self, obj: &'v Map<String, Value>) -> Option<&'v Vec<Value>> {
        let Some(list) = obj.get("credentials") else {
            self.push(
                None,
                "credentials",
                "missing (required): the list of credentials to rotate",
            );
            return None;
        };
        let Value::Array(list) = list else {
            self.push(
                None,
                "credentials",
                format!("expected an array, got {}", kind(list)),
            );
            return None;
        };
        Some(list)
    }

    /// Credential names are unique across the file.
    fn unique_name(&mut self, seen: &mut Seen, entry: &Entry, name: Option<&String>) {
        let Some(name) = name else { return };
        if let Some(first) = seen.names.get(name) {
            self.push(
                Some(entry),
                "name",
                format!("{} is already used by {first}", q(name)),
            );
        } else {
            seen.names.insert(name.clone(), entry.0.clone());
        }
    }

    /// One credential per Key Vault secret. Vault and secret names are case-insensitive in Key
    /// Vault.
    fn unique_secret(&mut self, seen: &mut Seen, entry: &Entry, parts: &CredentialParts) {
        let Some(kv) = &parts.key_vault else { return };
        let skey = (
            kv.vault.to_ascii_lowercase(),
            kv.secret.to_ascii_lowercase(),
        );
        if let Some(first) = seen.secrets.get(&skey) {
            self.push(
                Some(entry),
                "keyVault",
                format!(
                    "secret {} in vault {} is already the store of {first}: two credentials cannot share one Key Vault secret",
                    q(&kv.secret),
                    q(&kv.vault)
                ),
            );
        } else {
            seen.secrets.insert(skey, entry.0.clone());
        }
    }

    /// Consumer ids are distinct within a credential, and each consumer target has one writer
    /// across the file.
    fn unique_consumers(&mut self, seen: &mut Seen, entry: &Entry, parts: &CredentialParts) {
        let owner = parts.name.clone().unwrap_or_else(|| entry.0.clone());
        // Ids are 64-bit digests of distinct identities: a clash is all but impossible,
        // and would make one consumer count as updated for another, so it is refused.
        let mut ids: HashMap<ConsumerId, String> = HashMap::new();
        for (ci, c) in parts.consumers.iter() {
            let ci = *ci;
            if let Some(first) = ids.get(&c.id()).filter(|first| **first != c.identity()) {
                self.push(
                    Some(entry),
                    format!("consumers[{ci}]"),
                    format!(
                        "{} has the same id ({}) as another consumer of this credential ({first}); rename one",
                        c.describe(),
                        c.id()
                    ),
                );
            }
            ids.entry(c.id()).or_insert_with(|| c.identity());
            self.claim_target(seen, entry, ci, target_key(c, &owner), &c.describe());
        }
    }

    /// Records `consumers[ci]` of `entry` as the writer of `key`, or reports who already is.
    fn claim_target(
        &mut self,
        seen: &mut Seen,
        entry: &Entry,
        ci: usize,
        key: String,
        describe: &str,
    ) {
        if let Some(first) = seen.targets.get(&key) {
            self.push(
                Some(entry),
                format!("consumers[{ci}]"),
                format!("duplicate consumer: {describe} is already listed as {first}"),
            );
        } else {
            seen.targets
                .insert(key, format!("{} consumers[{ci}]", entry.0));
        }
    }

    /// One credential entry: the policy when the entry is valid, and in any case its valid parts
    /// (for the checks across entries).
    fn credential(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
        defaults: Days,
    ) -> CredentialParts {
        let before = self.errors.len();
        let mut parts = CredentialParts::default();
        let policy = self.credential_fields(entry, obj, defaults, &mut parts);
        parts.policy = policy.filter(|_| self.errors.len() == before);
        parts
    }

    fn credential_fields(
        &mut self,
        entry: &Entry,
        obj: &Map<String, Value>,
        defaults: Days,
        parts: &mut CredentialParts,
    ) -> Option<CredentialPolicy> {
        let e = Some(entry);
        let before = self.errors.len();
        self.deny_unknown(
            e,
            "",
            obj,
            &[
                "type",
                "name",
                "application",
                "tenantId",
                "keyVault",
                "renewBeforeDays",
                "lifetimeDays",
                "graceDays",
                "removeUnmanagedExpired",
                "consumers",
            ],
        );
        let name = self.credential_name(entry, obj);
        let application = match obj.get("application") {
            None => {
                self.push(e, "application", "missing (required): give { \"appId\": \"<guid>\" } or { \"objectId\": \"<guid>\" }");
                None
            }
            Some(v) => self.application(entry, v),
        };
        let tenant_id = self.tenant_id(entry, obj);
        let key_vault = match obj.get("keyVault") {
            None => {
                self.push(e, "keyVault", "missing (required): give { \"vault\": \"<name>\", \"secret\": \"<name>\" } or { \"secretUri\": \"https://<vault>.vault.azure.net/secrets/<name>\" }");
                None
            }
            Some(v) => self.key_vault(entry, v),
        };
        let days = self.credential_days(entry, obj, defaults);
        let remove_unmanaged_expired = self.remove_unmanaged_expired(entry, obj);
        let consumers = self.consumers(entry, obj);

        let listed: Vec<Consumer> = consumers.iter().map(|(_, c)| c.clone()).collect();
        if let Some(m) = days
            .grace
            .and_then(|g| super::minimums::grace_problem(g, &listed))
        {
            self.push(e, "graceDays", m);
        }

        parts.name = name.clone();
        parts.key_vault = key_vault.clone();
        parts.consumers = consumers.clone();
        if self.errors.len() != before {
            return None;
        }
        Some(CredentialPolicy {
            name: name?,
            application: application?,
            tenant_id: tenant_id?,
            key_vault: key_vault?,
            renew_before: Duration::try_days(days.renew_before?)?,
            lifetime: Duration::try_days(days.lifetime?)?,
            grace: Duration::try_days(days.grace?)?,
            remove_unmanaged_expired,
            consumers: listed,
        })
    }

    /// The required `name`.
    fn credential_name(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Option<String> {
        let e = Some(entry);
        let n = self.string(e, "", obj, "name", true)?;
        if valid_credential_name(n) {
            return Some(n.to_string());
        }
        self.push(
            e,
            "name",
            format!(
                "{} is not a valid credential name (lowercase letters, digits and '-', starting with a letter or digit, 1-63)",
                q(n)
            ),
        );
        None
    }

    /// The optional `tenantId`: `Some(None)` when absent, `None` when invalid.
    fn tenant_id(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Option<Option<String>> {
        let e = Some(entry);
        match self.string(e, "", obj, "tenantId", false) {
            Some(t) => self.guid(e, "tenantId", t).map(|u| Some(u.to_string())),
            None if obj.contains_key("tenantId") => None,
            None => Some(None),
        }
    }

    /// The credential's durations over the defaults.
    fn credential_days(&mut self, entry: &Entry, obj: &Map<String, Value>, defaults: Days) -> Days {
        let e = Some(entry);
        let overridden = ["renewBeforeDays", "lifetimeDays", "graceDays"]
            .iter()
            .any(|k| obj.contains_key(*k));
        let days = self.effective_days(e, "", obj, defaults);
        // Inherited-only values were already checked against each other under `defaults`.
        if overridden {
            self.relations(e, "", days);
        }
        days
    }

    /// The optional `removeUnmanagedExpired` flag (false when absent or invalid).
    fn remove_unmanaged_expired(&mut self, entry: &Entry, obj: &Map<String, Value>) -> bool {
        match obj.get("removeUnmanagedExpired") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.push(
                    Some(entry),
                    "removeUnmanagedExpired",
                    format!("expected true or false, got {}", kind(other)),
                );
                false
            }
        }
    }

    /// The valid consumers of the optional `consumers` array, with their index in it.
    fn consumers(&mut self, entry: &Entry, obj: &Map<String, Value>) -> Vec<(usize, Consumer)> {
        match obj.get("consumers") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, c)| self.consumer(entry, i, c).map(|c| (i, c)))
                .collect(),
            Some(other) => {
                self.push(
                    Some(entry),
                    "consumers",
                    format!("expected an array, got {}", kind(other)),
                );
                Vec::new()
            }
        }
    }

    fn application(&mut self, entry: &Entry, v: &Value) -> Option<AppRef> {
        let e = Some(entry);
        let obj = self.object(e, "application", v)?;
        self.deny_unknown(e, "application", obj, &["appId", "objectId"]);
        let app_id = self.string(e, "application", obj, "appId", false);
        let object_id = self.string(e, "application", obj, "objectId", false);
        match (obj.contains_key("appId"), obj.contains_key("objectId")) {
            (true, true) => {
                self.push(e, "application", "give either appId or objectId, not both");
                None
            }
            (false, false) => {
                self.push(
                    e,
                    "application",
                    "missing: give appId (the client id) or objectId",
                );
                None
            }
            (true, false) => app_id
                .and_then(|s| self.guid(e, "application.appId", s))
                .map(AppRef::AppId),
            (false, true) => object_id
                .and_then(|s| self.guid(e, "application.objectId", s))
                .map(AppRef::ObjectId),
        }
    }

    fn key_vault(&mut self, entry: &Entry, v: &Value) -> Option<VaultSecretRef> {
        let e = Some(entry);
        let obj = self.object(e, "keyVault", v)?;
        self.deny_unknown(e, "keyVault", obj, &["vault", "secret", "secretUri"]);
        if obj.contains_key("secretUri") {
            if obj.contains_key("vault") || obj.contains_key("secret") {
                self.push(
                    e,
                    "keyVault",
                    "give either vault and secret, or secretUri, not both",
                );
                return None;
            }
            let uri = self.string(e, "keyVault", obj, "secretUri", true)?;
            return match parse_secret_uri(uri) {
                Ok((r, suffix)) => {
                    self.uri_suffixes.insert(r.clone(), suffix);
                    Some(r)
                }
                Err(m) => {
                    self.push(e, "keyVault.secretUri", m);
                    None
                }
            };
        }
        let vault = self.string(e, "keyVault", obj, "vault", true);
        let secret = self.string(e, "keyVault", obj, "secret", true);
        let vault = vault.and_then(|s| match check_vault_name(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                self.push(e, "keyVault.vault", m);
                None
            }
        });
        let secret = secret.and_then(|s| match check_secret_name(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                self.push(e, "keyVault.secret", m);
                None
            }
        });
        Some(VaultSecretRef {
            vault: vault?,
            secret: secret?,
        })
    }

    fn consumer(&mut self, entry: &Entry, index: usize, v: &Value) -> Option<Consumer> {
        let e = Some(entry);
        let prefix = format!("consumers[{index}]");
        let obj = self.object(e, &prefix, v)?;
        let ty = self.string(e, &prefix, obj, "type", true)?;
        let allowed: &[&str] = match ty {
            "appSettingKeyVaultReference" | "appSettingValue" => &["type", "site", "setting"],
            "apiConnection" => &["type", "connection", "parameter"],
            "automationVariable" => &["type", "account", "variable"],
            "notifyOnly" => &["type", "system", "instructions"],
            other => {
                self.push(
                    e,
                    join(&prefix, "type"),
                    format!(
                        "unknown consumer type {} (expected one of: {})",
                        q(other),
                        CONSUMER_TYPES.join(", ")
                    ),
                );
                return None;
            }
        };
        self.deny_unknown(e, &prefix, obj, allowed);
        let before = self.errors.len();
        let c = ConsumerObj {
            entry,
            prefix: &prefix,
            obj,
        };
        let consumer = match ty {
            "appSettingKeyVaultReference" | "appSettingValue" => {
                self.app_setting_consumer(&c, ty == "appSettingValue")
            }
            "apiConnection" => self.api_connection_consumer(&c),
            "automationVariable" => self.automation_variable_consumer(&c),
            _ => self.notify_only_consumer(&c),
        }?;
        (self.errors.len() == before).then_some(consumer)
    }

    /// A required ARM resource id field of a consumer.
    fn arm_field(&mut self, c: &ConsumerObj<'_>, key: &str, kind: ArmKind) -> Option<ArmResource> {
        let id = self.string(Some(c.entry), c.prefix, c.obj, key, true)?;
        match parse_arm_id(id, kind) {
            Ok(r) => Some(r),
            Err(m) => {
                self.push(Some(c.entry), join(c.prefix, key), m);
                None
            }
        }
    }

    /// A required name field of a consumer, checked by `check`.
    fn name_field(
        &mut self,
        c: &ConsumerObj<'_>,
        key: &str,
        check: fn(&str) -> Result<(), String>,
    ) -> Option<String> {
        let s = self.string(Some(c.entry), c.prefix, c.obj, key, true)?;
        match check(s) {
            Ok(()) => Some(s.to_string()),
            Err(m) => {
                self.push(Some(c.entry), join(c.prefix, key), m);
                None
            }
        }
    }

    /// A required free-text field of a consumer that must not be blank (`what` says what it is).
    fn text_field(&mut self, c: &ConsumerObj<'_>, key: &str, what: &str) -> Option<String> {
        let s = self.string(Some(c.entry), c.prefix, c.obj, key, true)?;
        if s.trim().is_empty() {
            self.push(
                Some(c.entry),
                join(c.prefix, key),
                format!("must not be empty ({what})"),
            );
            None
        } else {
            Some(s.to_string())
        }
    }

    /// `appSettingKeyVaultReference` or (`value`) `appSettingValue`.
    fn app_setting_consumer(&mut self, c: &ConsumerObj<'_>, value: bool) -> Option<Consumer> {
        let site = self.arm_field(c, "site", ArmKind::Site);
        let setting = self.name_field(c, "setting", check_setting_name);
        let (site, setting) = (site?, setting?);
        Some(if value {
            Consumer::AppSettingValue { site, setting }
        } else {
            Consumer::AppSettingKeyVaultRef { site, setting }
        })
    }

    /// `apiConnection`: the connection, and the parameter holding the secret (by default the Key
    /// Vault connector's).
    fn api_connection_consumer(&mut self, c: &ConsumerObj<'_>) -> Option<Consumer> {
        let e = Some(c.entry);
        let connection = self.arm_field(c, "connection", ArmKind::Connection);
        let parameter = match self.string(e, c.prefix, c.obj, "parameter", false) {
            Some(p) if p.trim().is_empty() => {
                self.push(
                    e,
                    join(c.prefix, "parameter"),
                    format!("must not be empty (the parameterValues key holding the secret, usually {DEFAULT_CONNECTION_PARAMETER})"),
                );
                None
            }
            Some(p) => Some(p.to_string()),
            None if c.obj.contains_key("parameter") => None,
            None => Some(DEFAULT_CONNECTION_PARAMETER.to_string()),
        };
        Some(Consumer::ApiConnection {
            connection: connection?,
            parameter: parameter?,
        })
    }

    /// `automationVariable`.
    fn automation_variable_consumer(&mut self, c: &ConsumerObj<'_>) -> Option<Consumer> {
        let account = self.arm_field(c, "account", ArmKind::AutomationAccount);
        let variable = self.name_field(c, "variable", check_variable_name);
        Some(Consumer::AutomationVariable {
            account: account?,
            variable: variable?,
        })
    }

    /// `notifyOnly`: a system updated by hand.
    fn notify_only_consumer(&mut self, c: &ConsumerObj<'_>) -> Option<Consumer> {
        let system = self.text_field(c, "system", "the name of the system to update by hand");
        let instructions = self.text_field(
            c,
            "instructions",
            "the exact manual step a person must perform with the new value",
        );
        Some(Consumer::NotifyOnly {
            system: system?,
            instructions: instructions?,
        })
    }
}

/// First holders across the file's credentials, for the uniqueness checks.
/// The two kinds of credential entry (`type`).
#[derive(Clone, Copy)]
enum EntryKind {
    ClientSecret,
    Certificate,
}

#[derive(Default)]
struct Seen {
    names: HashMap<String, String>,
    /// Names of the client-secret entries (valid or not), for `replacesSecret`.
    secret_credentials: std::collections::HashSet<String>,
    /// (vault, certificate) lower-cased -> the entry storing its credential there.
    certificates: HashMap<(String, String), String>,
    secrets: HashMap<(String, String), String>,
    targets: HashMap<String, String>,
}

/// A consumer object being read: its entry, its field prefix (`consumers[i]`) and its fields.
struct ConsumerObj<'v> {
    entry: &'v Entry,
    prefix: &'v str,
    obj: &'v Map<String, Value>,
}

/// The valid parts of one credential entry, and its policy when the whole entry is valid.
#[derive(Default)]
struct CredentialParts {
    name: Option<String>,
    key_vault: Option<VaultSecretRef>,
    /// (index in the entry's `consumers`, consumer) for each valid consumer.
    consumers: Vec<(usize, Consumer)>,
    policy: Option<CredentialPolicy>,
}

/// What makes two consumers "the same place": writing one target from two entries would make
/// them fight. Notify-only consumers only clash with an identical one of the same credential.
fn target_key(c: &Consumer, credential: &str) -> String {
    fn res(r: &ArmResource) -> String {
        r.normalised_id("")
    }
    match c {
        // Both kinds of app setting write the same setting: one target.
        Consumer::AppSettingKeyVaultRef { site, setting }
        | Consumer::AppSettingValue { site, setting } => {
            format!("setting|{}|{}", res(site), setting.to_ascii_lowercase())
        }
        Consumer::ApiConnection {
            connection,
            parameter,
        } => format!("connection|{}|{parameter}", res(connection)),
        Consumer::AutomationVariable { account, variable } => {
            format!(
                "variable|{}|{}",
                res(account),
                variable.to_ascii_lowercase()
            )
        }
        Consumer::NotifyOnly {
            system,
            instructions,
        } => format!(
            "notify|{credential}|{}|{}",
            system.trim().to_lowercase(),
            instructions.trim()
        ),
    }
}

/// [`target_key`] for a certificate's consumers: a setting is the same target whichever kind
/// of credential writes it.
fn certificate_target_key(c: &crate::policy::CertificateConsumer, credential: &str) -> String {
    use crate::policy::CertificateConsumer as C;
    match c {
        C::AppSettingKeyVaultRef { site, setting } | C::AppSettingThumbprint { site, setting } => {
            format!(
                "setting|{}|{}",
                site.normalised_id(""),
                setting.to_ascii_lowercase()
            )
        }
        C::NotifyOnly {
            system,
            instructions,
        } => format!(
            "notify|{credential}|{}|{}",
            system.trim().to_lowercase(),
            instructions.trim()
        ),
    }
}

/// Only the canonical hyphenated form: the other forms `Uuid::parse_str` accepts (braces, urn,
/// 32 bare hex digits) are not what Azure shows anywhere, so they are most likely a paste error.
pub(crate) fn parse_guid(s: &str) -> Result<Uuid, String> {
    let shape_ok = s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    match (shape_ok, Uuid::parse_str(s)) {
        (true, Ok(u)) if u.is_nil() => Err(format!("{} is the nil GUID", q(s))),
        (true, Ok(u)) => Ok(u),
        _ => Err(format!(
            "{} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
            q(s)
        )),
    }
}

fn valid_credential_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Microsoft.KeyVault/vaults: 3-24 alphanumerics and hyphens, starting with a letter, ending
/// with a letter or digit, no consecutive hyphens ("Naming rules and restrictions for Azure
/// resources", learn.microsoft.com).
pub(crate) fn check_vault_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (3..=24).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !s.contains("--")
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid Key Vault name (3-24 letters, digits and '-', starting with a letter, no '--', not ending with '-')",
            q(s)
        ))
    }
}

/// Key Vault secret names: `^[0-9a-zA-Z-]{1,127}$` (same source; also Key Vault's "About keys,
/// secrets, and certificates"), so never a dot segment.
pub(crate) fn check_secret_name(s: &str) -> Result<(), String> {
    let ok =
        (1..=127).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid Key Vault secret name (letters, digits and '-' only, 1-127)",
            q(s)
        ))
    }
}

fn check_setting_name(s: &str) -> Result<(), String> {
    // App Service accepts more on Windows than on Linux; these are the characters no platform
    // accepts (and that would break the ARM settings dictionary or the environment).
    if s.is_empty()
        || s.len() > 256
        || !is_path_segment(s)
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '=')
    {
        Err(format!(
            "{} is not a valid app setting name (1-256 characters, no spaces, control characters, '=', '/', '\\', '?', '#' or '%', not '.' or '..')",
            q(s)
        ))
    } else {
        Ok(())
    }
}

/// Microsoft.Automation/automationAccounts/variables: 1-128 characters, none of
/// `< > * % & : \ ? . + /` or control characters, not ending with a space ("Naming rules and
/// restrictions for Azure resources", learn.microsoft.com). No '.' also means no `.`/`..` path
/// segment, which would address the account itself.
fn check_variable_name(s: &str) -> Result<(), String> {
    let forbidden = |c: char| c.is_control() || "<>*%&:\\?.+/".contains(c);
    if s.is_empty() || s.chars().count() > 128 || s.ends_with(' ') || s.chars().any(forbidden) {
        Err(format!(
            "{} is not a valid Automation variable name (1-128 characters, none of < > * % & : \\ ? . + / or control characters, not ending with a space)",
            q(s)
        ))
    } else {
        Ok(())
    }
}

/// A name that goes into an ARM URL path as one segment: never `.` or `..` (the URL would
/// address the parent resource), nor a character that ends or escapes a segment.
fn is_path_segment(s: &str) -> bool {
    s != "." && s != ".." && !s.chars().any(|c| "/\\?#%".contains(c))
}

/// `https://{vault}.{suffix}/secrets/{name}` (an optional trailing '/'); a version is refused,
/// since the rotator writes new versions and consumers follow the latest.
fn parse_secret_uri(s: &str) -> Result<(VaultSecretRef, String), String> {
    let expected = "expected https://<vault>.vault.azure.net/secrets/<name>";
    let url = url::Url::parse(s).map_err(|e| format!("{} is not a URL ({e}); {expected}", q(s)))?;
    if url.scheme() != "https" {
        return Err(format!("{} must use https; {expected}", q(s)));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{} must not carry a query, fragment or user; {expected}",
            q(s)
        ));
    }
    if url.port().is_some_and(|p| p != 443) {
        return Err(format!("{} must not name a port; {expected}", q(s)));
    }
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let Some((vault, suffix)) = host.split_once('.') else {
        return Err(format!("{} is not a Key Vault URI; {expected}", q(s)));
    };
    if !KEYVAULT_SUFFIXES.contains(&suffix) {
        return Err(format!(
            "{} is not a Key Vault host (expected <vault>.{})",
            q(&host),
            KEYVAULT_SUFFIXES.join(", <vault>.")
        ));
    }
    check_vault_name(vault)?;
    let mut segs: Vec<&str> = url.path().trim_start_matches('/').split('/').collect();
    if segs.last() == Some(&"") {
        segs.pop();
    }
    match segs.as_slice() {
        [kind, name] if kind.eq_ignore_ascii_case("secrets") => {
            check_secret_name(name)?;
            let r = VaultSecretRef {
                vault: vault.to_string(),
                secret: (*name).to_string(),
            };
            Ok((r, suffix.to_string()))
        }
        [kind, _, version] if kind.eq_ignore_ascii_case("secrets") => Err(format!(
            "{} names version {}: give the versionless URI, the rotator writes new versions",
            q(s),
            q(version)
        )),
        _ => Err(format!("{} is not a secret URI; {expected}", q(s))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ArmKind {
    Site,
    Connection,
    AutomationAccount,
}

impl ArmKind {
    fn type_name(self) -> &'static str {
        match self {
            ArmKind::Site => "Microsoft.Web/sites",
            ArmKind::Connection => "Microsoft.Web/connections",
            ArmKind::AutomationAccount => "Microsoft.Automation/automationAccounts",
        }
    }

    /// The id shape, for error messages.
    fn shape(self) -> &'static str {
        match self {
            ArmKind::Site => {
                "/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Web/sites/<name>[/slots/<slot>]"
            }
            ArmKind::Connection => {
                "/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Web/connections/<name>"
            }
            ArmKind::AutomationAccount => {
                "/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Automation/automationAccounts/<name>"
            }
        }
    }

    fn valid_name(self, name: &str) -> bool {
        match self {
            ArmKind::Site => valid_site_name(name, 2, 60),
            ArmKind::Connection => valid_connection_name(name),
            ArmKind::AutomationAccount => {
                let b = name.as_bytes();
                (6..=50).contains(&b.len())
                    && b[0].is_ascii_alphabetic()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
        }
    }

    /// [`Self::valid_name`] in words.
    fn name_rule(self) -> &'static str {
        match self {
            ArmKind::Site => "2-60 letters, digits and '-', not starting or ending with '-'",
            ArmKind::Connection => {
                "1-80 letters, digits, '_', '-', '.', '(' or ')', starting with a letter or digit, not ending with '.'"
            }
            ArmKind::AutomationAccount => {
                "6-50 letters, digits and '-', starting with a letter, ending with a letter or digit"
            }
        }
    }
}

/// Splits `/subscriptions/{guid}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/slots/{slot}]`
/// and checks the type and each name. ARM's literal segments are case-insensitive.
pub(crate) fn parse_arm_id(id: &str, want: ArmKind) -> Result<ArmResource, String> {
    let shape = want.shape();
    let bad = || {
        format!(
            "{} is not a {} resource id (expected {shape})",
            q(id),
            want.type_name()
        )
    };
    let trimmed = id.strip_suffix('/').unwrap_or(id);
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Err(bad());
    };
    let segs: Vec<&str> = rest.split('/').collect();
    if segs.len() < 8
        || !segs[0].eq_ignore_ascii_case("subscriptions")
        || !segs[2].eq_ignore_ascii_case("resourceGroups")
        || !segs[4].eq_ignore_ascii_case("providers")
    {
        return Err(bad());
    }
    let sub = parse_guid(segs[1]).map_err(|m| format!("subscription in {}: {m}", q(id)))?;
    let rg = segs[3];
    let given_type = format!("{}/{}", segs[5], segs[6]);
    if !given_type.eq_ignore_ascii_case(want.type_name()) {
        return Err(format!(
            "{} is a {given_type} resource id, expected a {} one ({shape})",
            q(id),
            want.type_name()
        ));
    }
    let name = segs[7];
    let slot = match (&segs[8..], want) {
        ([], _) => None,
        ([k, slot], ArmKind::Site) if k.eq_ignore_ascii_case("slots") => Some(*slot),
        _ => return Err(bad()),
    };
    check_arm_names(id, want, rg, name, slot)?;
    Ok(ArmResource {
        subscription: sub.to_string(),
        resource_group: rg.to_string(),
        name: name.to_string(),
        slot: slot.map(str::to_string),
    })
}

/// The resource group, resource name and slot of an ARM id, each against its naming rule.
fn check_arm_names(
    id: &str,
    want: ArmKind,
    rg: &str,
    name: &str,
    slot: Option<&str>,
) -> Result<(), String> {
    if !valid_resource_group(rg) {
        return Err(format!(
            "resource group {} in {} is not valid (1-90 letters, digits, '_', '-', '.', '(' or ')', not ending with '.')",
            q(rg),
            q(id)
        ));
    }
    if !want.valid_name(name) {
        return Err(format!(
            "name {} in {} is not a valid {} name ({})",
            q(name),
            q(id),
            want.type_name(),
            want.name_rule()
        ));
    }
    if let Some(slot) = slot
        && !valid_site_name(slot, 1, 59)
    {
        return Err(format!(
            "slot {} in {} is not a valid slot name (letters, digits and '-', not starting or ending with '-')",
            q(slot),
            q(id)
        ));
    }
    Ok(())
}

/// Microsoft.Web/connections has no row of its own in Microsoft's naming rules; the portal makes
/// names like `keyvault-1`. Held to the resource-group character set (which has no `/`, `%`
/// or `#`), starting with a letter or digit and not ending with '.', so never `.` or `..`.
fn valid_connection_name(s: &str) -> bool {
    let n = s.chars().count();
    (1..=80).contains(&n)
        && s.starts_with(|c: char| c.is_alphanumeric())
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
}

fn valid_resource_group(s: &str) -> bool {
    let n = s.chars().count();
    (1..=90).contains(&n)
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'))
}

fn valid_site_name(s: &str, min: usize, max: usize) -> bool {
    let b = s.as_bytes();
    (min..=max).contains(&b.len())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

//! Graph v1.0 certificate credentials of an application (`keyCredentials`): read them with their
//! public certificates, `addKey` / `removeKey` with a proof of possession, and
//! [`KeyCredentialsClient::merge_write`], the `PATCH` that keeps every other key.
//!
//! Sources: microsoft-graph-docs-contrib api-reference/v1.0/api/application-addkey.md and
//! application-removekey.md (proof, 200 with the keyCredential / 204), application-update.md
//! and resources/keycredential.md (`PATCH keyCredentials` replaces the collection; `key` is
//! "returned only on $select for a single object"). A refused proof is 401
//! `Authentication_MissingOrMalformed` (microsoft-graph-docs issues 10686, 14626). The erasure
//! `PATCH` causes when a writer forgets the others: msgraph-sdk-powershell#779.
//!
//! Graph has no conditional write on applications, so `merge_write` narrows the race it cannot
//! close: it reads, re-reads just before writing and refuses when the two differ, writes, then
//! reads back and reports any difference from what it wrote as [`ErrorKind::ConcurrentChange`].

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::common::{Bearer, Failure, Idempotency, ServiceOptions};
use super::error::{Error, ErrorKind, Service};
use super::graph::WriteLimiter;
use crate::cloud::Cloud;
use crate::secret::SecretValue;

/// A Graph failure of one of these calls as an [`Error`]. A 401
/// `Authentication_MissingOrMalformed` here is the proof of possession refused (not the
/// bearer token): addKey/removeKey carry one, and Graph answers so when it is not signed by a
/// currently valid key of the application (or malformed, or outside its ten minutes).
fn failed(f: &Failure, operation: &'static str, object_id: Uuid) -> Error {
    Error::from_failure(Service::Graph, operation, f)
        .proof_refusal()
        .on(format!("application with object id {object_id}"))
}

const LIST: &str = "list keyCredentials";
const ADD_KEY: &str = "addKey";
const REMOVE_KEY: &str = "removeKey";
const PATCH: &str = "update keyCredentials";

/// A certificate credential as Graph holds it (`cer` empty when Graph did not return it).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyCredential {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub key_type: String,
    pub usage: String,
    pub cer: Vec<u8>,
}

impl std::fmt::Debug for KeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCredential")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .field("end", &self.end)
            .field("cer_bytes", &self.cer.len())
            .finish_non_exhaustive()
    }
}

/// A certificate to put on the application (public DER only).
#[derive(Clone, PartialEq, Eq)]
pub struct NewKeyCredential {
    pub key_id: Uuid,
    pub display_name: String,
    pub cer: Vec<u8>,
}

impl std::fmt::Debug for NewKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKeyCredential")
            .field("key_id", &self.key_id)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRemoveOutcome {
    Removed,
    /// The application no longer had the key.
    AlreadyGone,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn iso(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

impl KeyCredential {
    fn to_json(&self) -> Value {
        json!({
            "keyId": self.key_id, "type": self.key_type, "usage": self.usage, "key": b64(&self.cer),
            "displayName": self.display_name, "startDateTime": iso(self.start), "endDateTime": iso(self.end),
        })
    }
}

impl NewKeyCredential {
    fn to_json(&self, with_id: bool) -> Value {
        let mut v = json!({"type": "AsymmetricX509Cert", "usage": "Verify", "key": b64(&self.cer), "displayName": self.display_name});
        if with_id {
            v["keyId"] = json!(self.key_id);
        }
        v
    }
}

#[derive(Clone)]
pub struct KeyCredentialsClient {
    options: ServiceOptions,
    bearer: Bearer,
    base: String,
    limiter: Arc<WriteLimiter>,
}

impl std::fmt::Debug for KeyCredentialsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCredentialsClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl KeyCredentialsClient {
    pub fn new(
        cloud: Cloud,
        credential: Arc<dyn TokenCredential>,
        options: ServiceOptions,
        limiter: Arc<WriteLimiter>,
    ) -> Self {
        Self {
            bearer: Bearer::new(credential, cloud.graph_scope()),
            base: format!("{}/v1.0", cloud.graph_endpoint()),
            options,
            limiter,
        }
    }

    /// The application's key credentials, each with its certificate (`$select=keyCredentials`).
    pub async fn list(&self, object_id: Uuid) -> Result<Vec<KeyCredential>, Error> {
        let url = format!("{}/applications/{object_id}", self.base);
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || {
                self.options
                    .http
                    .get(&url)
                    .query(&[("$select", "keyCredentials")])
            },
        )
        .await
        .map_err(|f| failed(&f, LIST, object_id))?;
        parse_key_credentials(&reply.body).map_err(|m| Error::bad_answer(Service::Graph, LIST, m))
    }

    /// `addKey` with a proof signed by a current key of the application.
    pub async fn add_key(
        &self,
        object_id: Uuid,
        new: &NewKeyCredential,
        proof: &SecretValue,
    ) -> Result<KeyCredential, Error> {
        let url = format!("{}/applications/{object_id}/addKey", self.base);
        let body = json!({"keyCredential": new.to_json(false), "passwordCredential": null, "proof": proof.expose()});
        self.limiter.acquire().await;
        // Not idempotent: a repeat after an unknown outcome could add the key twice.
        let reply = super::common::send(
            &self.options.retry,
            Idempotency::NotIdempotent,
            Some(&self.bearer),
            || self.options.http.post(&url).json(&body),
        )
        .await
        .map_err(|f| failed(&f, ADD_KEY, object_id))?;
        let bad = |m| Error::bad_answer(Service::Graph, ADD_KEY, m);
        let v: Value = super::common::parse_json("addKey answer", &reply.body).map_err(bad)?;
        let mut k = key_credential(&v).map_err(bad)?;
        k.cer = new.cer.clone();
        Ok(k)
    }

    /// `removeKey` by exact keyId; a key already gone (404 and the read-back lacks it) is
    /// [`KeyRemoveOutcome::AlreadyGone`].
    pub async fn remove_key(
        &self,
        object_id: Uuid,
        key_id: Uuid,
        proof: &SecretValue,
    ) -> Result<KeyRemoveOutcome, Error> {
        let url = format!("{}/applications/{object_id}/removeKey", self.base);
        let body = json!({"keyId": key_id, "proof": proof.expose()});
        self.limiter.acquire().await;
        let result = super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || self.options.http.post(&url).json(&body),
        )
        .await;
        let failure = match result {
            Ok(_) => return Ok(KeyRemoveOutcome::Removed),
            Err(f) => f,
        };
        if !matches!(
            &failure,
            Failure::Status {
                status: 400 | 404,
                ..
            }
        ) {
            return Err(failed(&failure, REMOVE_KEY, object_id));
        }
        let keys = self.list(object_id).await?;
        if keys.iter().all(|k| k.key_id != key_id) {
            Ok(KeyRemoveOutcome::AlreadyGone)
        } else {
            Err(failed(&failure, REMOVE_KEY, object_id))
        }
    }

    async fn patch(&self, object_id: Uuid, keys: &[Value]) -> Result<(), Error> {
        let url = format!("{}/applications/{object_id}", self.base);
        let body = json!({"keyCredentials": keys});
        self.limiter.acquire().await;
        // A full replace: repeating it writes the same collection.
        super::common::send(
            &self.options.retry,
            Idempotency::Idempotent,
            Some(&self.bearer),
            || self.options.http.patch(&url).json(&body),
        )
        .await
        .map_err(|f| failed(&f, PATCH, object_id))?;
        Ok(())
    }

    /// Adds `add` and removes the keyIds in `remove`, keeping every other key exactly: read,
    /// re-read (refuse if it moved), write the merged collection, read back and compare.
    pub async fn merge_write(
        &self,
        object_id: Uuid,
        add: &[NewKeyCredential],
        remove: &[Uuid],
    ) -> Result<Vec<KeyCredential>, Error> {
        let before = self.list(object_id).await?;
        if let Some(k) = before
            .iter()
            .find(|k| k.cer.is_empty() && !remove.contains(&k.key_id))
        {
            return Err(Error::new(ErrorKind::Blocked, Service::Graph, PATCH)
                .on(format!("application with object id {object_id}"))
                .with_detail(format!(
                    "key credential {} came back without its certificate; refusing to write \
                     keyCredentials (it would be erased)",
                    k.key_id
                )));
        }
        let mut merged: Vec<Value> = before
            .iter()
            .filter(|k| !remove.contains(&k.key_id))
            .map(KeyCredential::to_json)
            .collect();
        merged.extend(
            add.iter()
                .filter(|n| before.iter().all(|k| k.key_id != n.key_id))
                .map(|n| n.to_json(true)),
        );
        let expected: Vec<Uuid> = before
            .iter()
            .map(|k| k.key_id)
            .filter(|id| !remove.contains(id))
            .chain(add.iter().map(|n| n.key_id))
            .collect();
        let again = self.list(object_id).await?;
        check_same(&ids(&before), &ids(&again))?;
        self.patch(object_id, &merged).await?;
        let after = self.list(object_id).await?;
        check_same(&expected, &ids(&after))?;
        Ok(after)
    }
}

fn ids(keys: &[KeyCredential]) -> Vec<Uuid> {
    keys.iter().map(|k| k.key_id).collect()
}

/// The two keyId sets must be equal (order aside).
fn check_same(expected: &[Uuid], found: &[Uuid]) -> Result<(), Error> {
    let appeared: Vec<Uuid> = found
        .iter()
        .filter(|k| !expected.contains(k))
        .copied()
        .collect();
    let disappeared: Vec<Uuid> = expected
        .iter()
        .filter(|k| !found.contains(k))
        .copied()
        .collect();
    if appeared.is_empty() && disappeared.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::ConcurrentChange {
                appeared,
                disappeared,
            },
            Service::Graph,
            PATCH,
        ))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    key_id: Option<String>,
    display_name: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
    #[serde(rename = "type")]
    key_type: Option<String>,
    usage: Option<String>,
    key: Option<String>,
}

fn time(v: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| format!("keyCredential: '{field}' is not a date"))
    })
    .transpose()
}

fn key_credential(v: &Value) -> Result<KeyCredential, String> {
    let raw: RawKey =
        serde_json::from_value(v.clone()).map_err(|e| format!("keyCredential: {e}"))?;
    let key_id = raw
        .key_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or("keyCredential: 'keyId' is missing or not a GUID")?;
    let cer = match raw.key.as_deref() {
        None => vec![],
        Some(k) => base64::engine::general_purpose::STANDARD
            .decode(k)
            .map_err(|_| "keyCredential: 'key' is not base64")?,
    };
    Ok(KeyCredential {
        key_id,
        display_name: raw.display_name,
        start: time(raw.start_date_time.as_deref(), "startDateTime")?,
        end: time(raw.end_date_time.as_deref(), "endDateTime")?,
        key_type: raw.key_type.unwrap_or_else(|| "AsymmetricX509Cert".into()),
        usage: raw.usage.unwrap_or_else(|| "Verify".into()),
        cer,
    })
}

pub(crate) fn parse_key_credentials(body: &[u8]) -> Result<Vec<KeyCredential>, String> {
    let v: Value = super::common::parse_json("application", body)?;
    match v.get("keyCredentials") {
        Some(Value::Array(items)) => items.iter().map(key_credential).collect(),
        Some(Value::Null) | None => Ok(vec![]),
        Some(_) => Err("application: 'keyCredentials' is not an array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_credentials_parse_with_and_without_their_certificate() {
        let id = Uuid::new_v4();
        let body = json!({"keyCredentials": [
            {"keyId": id, "type": "AsymmetricX509Cert", "usage": "Verify", "key": "AQID", "endDateTime": "2027-01-01T00:00:00Z"},
            {"keyId": Uuid::nil(), "key": null},
        ]});
        let keys = parse_key_credentials(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys[0].cer, vec![1, 2, 3]);
        assert!(keys[1].cer.is_empty());
        assert!(parse_key_credentials(br#"{"keyCredentials":[{"keyId":"x"}]}"#).is_err());
        assert!(!format!("{:?}", keys[0]).contains("AQID"));
    }

    #[test]
    fn concurrent_change_names_both_directions() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(check_same(&[a, b], &[b, a]).is_ok());
        let e = check_same(&[a, b], &[a, c]).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::ConcurrentChange {
                appeared: vec![c],
                disappeared: vec![b]
            }
        );
    }
}

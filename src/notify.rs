//! Telling people: Microsoft Teams (Workflows webhook, Adaptive Card), Slack-compatible
//! webhooks and a generic JSON webhook — plus a structured log line, always.
//!
//! Messages are deduplicated (one per credential, kind and day, remembered in the rotator's
//! storage), retried with backoff, and never carry a secret: a [`Message`] is built from
//! key ids, hints and Key Vault secret ids only. Webhook URLs themselves are secrets (Teams and
//! Slack URLs embed a signature) and are held as [`SecretValue`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::engine::inventory::{CredentialKind, Holder, InventoryRow};
use crate::engine::ports::{ManualStep, Notifier, PortError, StorePorts};
use crate::secret::SecretValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// A notify-only consumer must be given the new value by a person.
    ManualStep,
    /// A rotation run failed.
    RotationFailed,
    /// A credential nobody enrolled expires soon.
    ExpiringUnenrolled,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub kind: MessageKind,
    /// Deduplication key: the credential (or app id for unenrolled ones).
    pub subject: String,
    pub title: String,
    pub text: String,
    pub facts: Vec<(String, String)>,
    pub at: DateTime<Utc>,
}

impl Message {
    pub fn manual_step(step: &ManualStep, at: DateTime<Utc>) -> Self {
        if let Some(thumbprint) = &step.certificate_thumbprint {
            return Self::certificate_step(step, thumbprint, at);
        }
        let mut facts = vec![
            ("System".to_string(), step.system.clone()),
            ("Application (client) ID".to_string(), step.app_id.clone()),
            ("New secret keyId".to_string(), step.new_key_id.clone()),
            ("New secret starts with".to_string(), step.new_hint.clone()),
            ("Key Vault secret".to_string(), step.secret_id.clone()),
        ];
        if let Some(d) = step.old_secret_removed_after {
            facts.push((
                "Old secret removed after".to_string(),
                d.format("%Y-%m-%d %H:%M UTC").to_string(),
            ));
        }
        Message {
            kind: MessageKind::ManualStep,
            // One message per new secret: the next rotation is a new step for the person.
            subject: format!("{}-{}", step.credential, step.new_key_id),
            title: format!(
                "Action needed: give {} its new client secret ({})",
                step.system, step.credential
            ),
            text: format!(
                "The client secret of {} was rotated. Read the new value from {} and: {}",
                step.system, step.secret_id, step.instructions
            ),
            facts,
            at,
        }
    }

    /// A notify-only consumer of a certificate credential: where the new certificate is and
    /// its thumbprint (the person fetches it from Key Vault; no key material is sent).
    fn certificate_step(step: &ManualStep, thumbprint: &str, at: DateTime<Utc>) -> Self {
        Message {
            kind: MessageKind::ManualStep,
            subject: format!("{}-{}", step.credential, step.new_key_id),
            title: format!(
                "Action needed: give {} its new certificate ({})",
                step.system, step.credential
            ),
            text: format!(
                "The certificate of {} was renewed. Take the new version from {} (thumbprint {thumbprint}) and: {}",
                step.system, step.secret_id, step.instructions
            ),
            facts: vec![
                ("System".to_string(), step.system.clone()),
                ("Application (client) ID".to_string(), step.app_id.clone()),
                ("New certificate keyId".to_string(), step.new_key_id.clone()),
                ("Thumbprint".to_string(), thumbprint.to_string()),
                ("Key Vault certificate".to_string(), step.secret_id.clone()),
            ],
            at,
        }
    }

    pub fn rotation_failed(credential: &str, error: &str, at: DateTime<Utc>) -> Self {
        Message {
            kind: MessageKind::RotationFailed,
            subject: credential.to_string(),
            title: format!("Secret rotation failed: {credential}"),
            text: format!(
                "The rotation of {credential} failed and will be retried on the next run: {error}"
            ),
            facts: vec![("Credential".into(), credential.into())],
            at,
        }
    }

    /// A credential nobody rotates (see [`crate::engine::inventory::warns`]) that expires on `expires`.
    /// Names the application, the credential's keyId and where it sits; the inventory holds no
    /// value, so none can leak into the message.
    pub fn expiring_unenrolled(
        row: &InventoryRow,
        expires: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Self {
        let what = match (row.kind, row.holder) {
            (CredentialKind::Secret, Holder::Application) => "Client secret",
            (CredentialKind::Certificate, Holder::Application) => "Certificate",
            (CredentialKind::Secret, Holder::ServicePrincipal) => "Service principal secret",
            (CredentialKind::Certificate, Holder::ServicePrincipal) => {
                "Service principal certificate"
            }
        };
        let days = crate::engine::inventory::days_left(expires, at);
        let when = match days {
            0 => "within a day".to_string(),
            1 => "in 1 day".to_string(),
            n => format!("in {n} days"),
        };
        let mut facts = vec![
            ("Application".into(), row.application.clone()),
            ("Application (client) ID".into(), row.app_id.to_string()),
            ("Credential".into(), what.to_string()),
            ("keyId".into(), row.key_id.to_string()),
        ];
        if let Some(d) = &row.display_name {
            facts.push(("Description".into(), d.clone()));
        }
        facts.push((
            "Expires".into(),
            expires.format("%Y-%m-%d %H:%M UTC").to_string(),
        ));
        let also = match &row.enrolled_as {
            Some(c) => format!(
                " The application is enrolled as {c}, but this credential is not the one the rotator keeps in Key Vault (a secret the rotator replaced without having created it stays until it expires): anything still using it fails then."
            ),
            None => String::new(),
        };
        Message {
            kind: MessageKind::ExpiringUnenrolled,
            subject: format!("{}/{}", row.app_id, row.key_id),
            title: format!(
                "{what} of {} expires {when} and is not enrolled",
                row.application
            ),
            text: format!(
                "{what} {} of {} ({}) expires {}. Nobody rotates it: enrol it in the rotator's policy, renew it by hand, or remove it if nothing uses it.{also}",
                row.key_id,
                row.application,
                row.app_id,
                expires.format("%Y-%m-%d"),
            ),
            facts,
            at,
        }
    }
}

/// The wire format of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// Teams Workflows "post to a channel when a webhook request is received": an Adaptive Card.
    Teams,
    /// Slack incoming webhook (also Mattermost, Rocket.Chat): `text` + `blocks`.
    Slack,
    /// The [`Message`] as JSON.
    Generic,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub kind: WebhookKind,
    pub url: SecretValue,
}

/// The webhook body for `kind`. Titles, texts and facts carry names read from Azure (application
/// and credential display names, which anyone who can register an app chooses), so none of them
/// is ever interpreted as markup by the receiver:
///
/// - Teams: Markdown renders in `TextBlock.text`, `Fact.title` and `Fact.value` ("Format cards in
///   Teams"), but not in a `RichTextBlock`'s `TextRun`s ("Adaptive Cards: text features": "
///   RichTextBlock does not support Markdown"), so every text goes out as TextRuns.
/// - Slack: `mrkdwn` texts (the fallback `text` and the facts) have `&`, `<` and `>` replaced by
///   `&amp;`, `&lt;` and `&gt;` as Slack's "Escaping text" asks, so `<!channel>` and
///   `<https://evil|Renew>` show as typed, and are `verbatim` (no auto-linking of URLs or
///   channel names); the header is `plain_text`, which Slack never parses.
///
/// Control characters (a newline in a display name faking a line of our own) become spaces.
pub fn render(kind: WebhookKind, m: &Message) -> serde_json::Value {
    match kind {
        WebhookKind::Teams => teams_card(m),
        WebhookKind::Slack => slack_message(m),
        WebhookKind::Generic => serde_json::to_value(m).unwrap_or_else(|_| json!({})),
    }
}

/// `text` with every control character replaced by a space.
pub fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Slack's escaping for text in `mrkdwn`: only `&`, `<` and `>`.
pub fn slack_escape(text: &str) -> String {
    single_line(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plain-text (no Markdown) Adaptive Card block of runs.
fn text_runs(runs: Vec<serde_json::Value>) -> serde_json::Value {
    json!({"type": "RichTextBlock", "inlines": runs})
}

fn run(text: &str) -> serde_json::Value {
    json!({"type": "TextRun", "text": single_line(text)})
}

fn teams_card(m: &Message) -> serde_json::Value {
    let mut title = run(&m.title);
    title["size"] = json!("Medium");
    title["weight"] = json!("Bolder");
    let mut body = vec![text_runs(vec![title]), text_runs(vec![run(&m.text)])];
    body.extend(m.facts.iter().map(|(k, v)| {
        let mut key = run(&format!("{k}: "));
        key["weight"] = json!("Bolder");
        text_runs(vec![key, run(v)])
    }));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body
            }
        }]
    })
}

fn slack_message(m: &Message) -> serde_json::Value {
    let fields: Vec<_> = m
        .facts
        .iter()
        .map(|(k, v)| {
            let text = format!("*{}*\n{}", slack_escape(k), slack_escape(v));
            json!({"type": "mrkdwn", "text": text, "verbatim": true})
        })
        .collect();
    json!({
        "text": slack_escape(&format!("{}: {}", m.title, m.text)),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": single_line(&m.title)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&m.text), "verbatim": true}},
            {"type": "section", "fields": fields}
        ]
    })
}

/// Sends to every configured webhook, once per subject, kind and day.
pub struct Notifications {
    pub webhooks: Vec<Webhook>,
    pub http: reqwest::Client,
    /// Remembers what was sent (dedup); `None` disables deduplication.
    pub store: Option<Arc<dyn StorePorts>>,
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Notifications {
    pub fn new(
        webhooks: Vec<Webhook>,
        http: reqwest::Client,
        store: Option<Arc<dyn StorePorts>>,
    ) -> Self {
        Self {
            webhooks,
            http,
            store,
            attempts: 3,
            first_backoff: Duration::from_millis(500),
        }
    }

    fn dedup_key(m: &Message) -> String {
        let kind = match m.kind {
            MessageKind::ManualStep => "manual-step",
            MessageKind::RotationFailed => "rotation-failed",
            MessageKind::ExpiringUnenrolled => "expiring-unenrolled",
        };
        let subject: String = m
            .subject
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("notify/{}/{kind}-{subject}.json", m.at.format("%Y-%m-%d"))
    }

    /// Logs the message and posts it to every webhook. `Ok(false)`: already sent today.
    pub async fn send(&self, m: &Message) -> Result<bool, PortError> {
        let key = Self::dedup_key(m);
        if let Some(store) = &self.store
            && store.get_json(&key).await?.is_some()
        {
            tracing::info!(notification = %m.title, "already sent today; not repeated");
            return Ok(false);
        }
        tracing::warn!(
            notification = %m.title,
            kind = ?m.kind,
            subject = %m.subject,
            "{}",
            m.text
        );
        let mut failures = Vec::new();
        for hook in &self.webhooks {
            if let Err(e) = self.post(hook, m).await {
                failures.push(e);
            }
        }
        if !failures.is_empty() {
            return Err(PortError::Transient(failures.join("; ")));
        }
        if let Some(store) = &self.store {
            store
                .put_json(&key, &serde_json::to_value(m).unwrap_or_default())
                .await?;
        }
        Ok(true)
    }

    async fn post(&self, hook: &Webhook, m: &Message) -> Result<(), String> {
        let body = render(hook.kind, m);
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            match self.http.post(hook.url.expose()).json(&body).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    // Never echo the URL: it carries the webhook's signature.
                    last = format!("{:?} webhook answered {}", hook.kind, r.status());
                    if !(r.status().is_server_error() || r.status().as_u16() == 429) {
                        return Err(last);
                    }
                }
                Err(e) => {
                    last = format!(
                        "{:?} webhook unreachable ({})",
                        hook.kind,
                        if e.is_timeout() {
                            "timeout"
                        } else if e.is_connect() {
                            "connect"
                        } else {
                            "request"
                        }
                    )
                }
            }
            if attempt < self.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(last)
    }
}

#[async_trait::async_trait]
impl Notifier for Notifications {
    async fn manual_step(&self, step: &ManualStep) -> Result<usize, PortError> {
        self.send(&Message::manual_step(step, Utc::now()))
            .await
            .map(|_| self.webhooks.len())
    }

    async fn rotation_failed(
        &self,
        credential: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.send(&Message::rotation_failed(credential, error, at))
            .await
            .map(|_| ())
    }

    async fn expiring_unenrolled(
        &self,
        row: &InventoryRow,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let Some(expires) = row.end else {
            return Err(PortError::Other(format!(
                "credential {} of {} never expires: nothing to warn about",
                row.key_id, row.app_id
            )));
        };
        self.send(&Message::expiring_unenrolled(row, expires, at))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> ManualStep {
        ManualStep {
            credential: "ezsign".into(),
            system: "EzSign".into(),
            instructions: "Run ezsign-manage.sh, Set Passwords, restart".into(),
            app_id: "7412f649-8e14-471f-bfc1-733b36a42705".into(),
            new_key_id: "9f0e8c3e-3c1b-4b0e-9a53-2f0f2d1b7a11".into(),
            new_hint: "nSc".into(),
            secret_id: "https://kv-ezsign.vault.azure.net/secrets/ezsign-token/0123".into(),
            old_secret_removed_after: None,
            certificate_thumbprint: None,
        }
    }

    #[test]
    fn teams_card_is_an_adaptive_card_with_the_facts() {
        let m = Message::manual_step(&step(), Utc::now());
        let v = render(WebhookKind::Teams, &m);
        let card = &v["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        let body = card["content"]["body"].as_array().unwrap();
        let title = &body[0]["inlines"][0];
        assert!(title["text"].as_str().unwrap().contains("EzSign"));
        assert_eq!(title["weight"], "Bolder");
        assert!(body.len() >= 2 + 5, "one block per fact");
    }

    #[test]
    fn a_certificates_manual_step_names_the_version_and_thumbprint_and_no_secret() {
        let mut s = step();
        s.new_hint = String::new();
        s.secret_id = "https://kv.vault.azure.net/certificates/c/0123".into();
        s.certificate_thumbprint = Some("0A1B".into());
        let m = Message::manual_step(&s, Utc::now());
        assert!(m.title.contains("new certificate"), "{}", m.title);
        assert!(m.text.contains("thumbprint 0A1B") && m.text.contains("/certificates/c/0123"));
        assert!(
            m.facts.iter().all(|(k, _)| !k.contains("secret")),
            "{:?}",
            m.facts
        );
        let wire = serde_json::to_value(&s).unwrap();
        assert_eq!(wire["certificateThumbprint"], "0A1B");
        assert!(
            serde_json::to_value(step())
                .unwrap()
                .get("certificateThumbprint")
                .is_none()
        );
    }

    /// Was: an application named like a Markdown link or a Slack broadcast reached the channel
    /// as a working link or an @channel. Now every such text arrives as typed.
    #[test]
    fn names_from_azure_are_never_markup() {
        let mut s = step();
        s.system = "EzSign [Renew](https://evil.example) <!channel> <https://evil.example|Renew> & **x**\nAction: click".into();
        let m = Message::manual_step(&s, Utc::now());
        let teams = render(WebhookKind::Teams, &m);
        let mut types = Vec::new();
        collect_types(&teams["attachments"][0]["content"]["body"], &mut types);
        assert!(
            types
                .iter()
                .all(|t| ["RichTextBlock", "TextRun"].contains(&t.as_str())),
            "only blocks without Markdown: {types:?}"
        );
        assert!(
            !teams.to_string().contains("\\n"),
            "no control character: {teams}"
        );
        let mut slack = render(WebhookKind::Slack, &m);
        assert_eq!(slack["blocks"][0]["text"]["type"], "plain_text");
        slack["blocks"][0] = json!(null);
        let text = slack.to_string();
        for raw in ["<!channel>", "<https://evil", "& **"] {
            assert!(!text.contains(raw), "{raw} went out raw: {text}");
        }
        assert!(text.contains("&lt;!channel&gt;") && text.contains("&amp; **x**"));
        assert!(
            text.contains("**x** Action: click"),
            "newline made a space: {text}"
        );
    }

    fn collect_types(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect_types(x, out)),
            serde_json::Value::Object(o) => {
                if let Some(t) = o.get("type").and_then(|t| t.as_str()) {
                    out.push(t.to_string());
                }
                o.values().for_each(|x| collect_types(x, out));
            }
            _ => {}
        }
    }

    #[test]
    fn slack_message_has_text_and_blocks() {
        let m = Message::rotation_failed("pa", "addPassword: throttled", Utc::now());
        let v = render(WebhookKind::Slack, &m);
        assert!(v["text"].as_str().unwrap().contains("pa"));
        assert_eq!(v["blocks"][0]["type"], "header");
    }

    #[test]
    fn expiring_unenrolled_names_the_credential_and_is_one_a_day_per_keyid() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T02:00:00Z")
            .unwrap()
            .to_utc();
        let app = crate::planner::AppState {
            object_id: uuid::Uuid::from_u128(1),
            app_id: uuid::Uuid::parse_str("c0ffee00-0000-4000-8000-000000000001").unwrap(),
            display_name: "Legacy Billing".into(),
            passwords: vec![crate::planner::PasswordInfo {
                key_id: uuid::Uuid::parse_str("c0ffee00-0000-4000-8000-0000000000a1").unwrap(),
                display_name: Some("billing job".into()),
                hint: Some("Bil".into()),
                start: None,
                end: Some(now + chrono::Duration::hours(5 * 24 + 12)),
            }],
        };
        let row = crate::engine::inventory::rows_for_app(
            &app,
            &[],
            &crate::engine::inventory::Enrolment::default(),
            now,
        )
        .remove(0);
        let m = Message::expiring_unenrolled(&row, row.end.unwrap(), now);
        assert_eq!(
            m.title,
            "Client secret of Legacy Billing expires in 5 days and is not enrolled"
        );
        assert_eq!(
            Notifications::dedup_key(&m),
            "notify/2026-11-22/expiring-unenrolled-c0ffee00-0000-4000-8000-000000000001_c0ffee00-0000-4000-8000-0000000000a1.json"
        );
        let card = render(WebhookKind::Teams, &m).to_string();
        assert!(
            card.contains("billing job") && card.contains("2026-11-27"),
            "{card}"
        );
    }

    #[test]
    fn dedup_key_is_per_day_kind_and_subject() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .to_utc();
        let m = Message::rotation_failed("pa/x", "e", at);
        assert_eq!(
            Notifications::dedup_key(&m),
            "notify/2026-11-22/rotation-failed-pa_x.json"
        );
    }
}

//! The rotator's own storage bookkeeping around a credential's run (issue #19: it held the
//! pass's parallel slot for several storage round trips in a row): the learnt lifetime cap is
//! read while the first observation is in flight, and after the run's last write to Azure the
//! lease release, the audit record and the last outcome go out together — the release never
//! before that last Azure write, and the records are kept also when the run failed.
//!
//! Seen through a recording wrapper around the engine's real store (Azurite), with the
//! emulator's request log as the clock of Azure's side.

use crate::support::world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_emulator::Control;
use secret_rotator::engine::Engine;
use secret_rotator::engine::ports::{LeaseGuard, PortError, StorePorts};
use secret_rotator::engine::report::CredentialOutcome;
use world::*;

/// What the store saw, in order: `start`/`end` of each call, with the blob's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Start(String),
    End(String),
}

struct Recording {
    inner: Arc<dyn StorePorts>,
    events: Arc<Mutex<Vec<Event>>>,
    emulator: Control,
}

impl Recording {
    fn log(&self, e: Event) {
        self.events.lock().expect("events").push(e);
    }
}

struct RecordingLease {
    inner: Box<dyn LeaseGuard>,
    events: Arc<Mutex<Vec<Event>>>,
    emulator: Control,
}

#[async_trait::async_trait]
impl LeaseGuard for RecordingLease {
    async fn release(self: Box<Self>) {
        let azure = self.emulator.requests().len();
        {
            let mut events = self.events.lock().expect("events");
            events.push(Event::Start(format!(
                "release after {azure} Azure requests"
            )));
            events.push(Event::Start("release".into()));
        }
        self.inner.release().await;
        self.events
            .lock()
            .expect("events")
            .push(Event::End("release".into()));
    }
}

#[async_trait::async_trait]
impl StorePorts for Recording {
    async fn lease(&self, name: &str) -> Result<Box<dyn LeaseGuard>, PortError> {
        let inner = self.inner.lease(name).await?;
        Ok(Box::new(RecordingLease {
            inner,
            events: self.events.clone(),
            emulator: self.emulator.clone(),
        }))
    }

    async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), PortError> {
        self.log(Event::Start(path.into()));
        let r = self.inner.put_json(path, body).await;
        self.log(Event::End(path.into()));
        r
    }

    /// The lifetime cap's read answers only once Azure has answered the observation's first
    /// read of the application: a run that awaited the cap before observing would wait here
    /// (bounded, so such a run fails the test instead of hanging it).
    async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, PortError> {
        self.log(Event::Start(path.into()));
        if path.starts_with("lifetime-caps/") {
            let seen = |c: &Control| {
                c.requests()
                    .iter()
                    .any(|r| r.operation.as_deref() == Some("getApplication"))
            };
            for _ in 0..400 {
                if seen(&self.emulator) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !seen(&self.emulator) {
                self.log(Event::End("gave up waiting for the observation".into()));
            }
        }
        let r = self.inner.get_json(path).await;
        self.log(Event::End(path.into()));
        r
    }
}

/// The world's engine with its store wrapped; the events it records.
fn recording_engine(w: &World) -> (Arc<Engine>, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = &w.engine;
    let engine = Engine {
        policy: e.policy.clone(),
        azure: e.azure.clone(),
        certs: e.certs.clone(),
        store: Arc::new(Recording {
            inner: e.store.clone(),
            events: events.clone(),
            emulator: w.emu.emulator.control(),
        }),
        notifier: e.notifier.clone(),
        options: e.options.clone(),
        probes: Default::default(),
    };
    (Arc::new(engine), events)
}

fn position(events: &[Event], e: &Event) -> usize {
    events
        .iter()
        .position(|x| x == e)
        .unwrap_or_else(|| panic!("{e:?} in {events:#?}"))
}

#[tokio::test]
async fn the_cap_is_read_alongside_the_observation_and_the_records_go_out_with_the_release() {
    let w = spawn_world(demo_scenario(), &demo_policy()).await;
    let (engine, events) = recording_engine(&w);
    let cred = w.credential("provision-assist").clone();
    let report = engine
        .run_credential(&cred, w.now(), false, None, "bookkeeping")
        .await;
    assert_eq!(report.outcome, CredentialOutcome::Progressed, "{report:#?}");
    let events = events.lock().expect("events").clone();
    assert!(
        !events.contains(&Event::End("gave up waiting for the observation".into())),
        "the lifetime cap was awaited before the observation started: {events:#?}"
    );
    let cap = "lifetime-caps/provision-assist.json";
    assert!(events.contains(&Event::End(cap.into())), "{events:#?}");
    // Release, audit record and last outcome: each starts before any of them ends.
    let last = Event::Start("last/provision-assist.json".into());
    let audit = events
        .iter()
        .find(|e| matches!(e, Event::Start(p) if p.starts_with("audit/")))
        .cloned()
        .unwrap_or_else(|| panic!("an audit record in {events:#?}"));
    // The release went out after the run's last request to Azure.
    let azure = w.emu.emulator.control().requests().len();
    let released_after = Event::Start(format!("release after {azure} Azure requests"));
    assert!(
        events.contains(&released_after),
        "{released_after:?}: {events:#?}"
    );
    let starts = [Event::Start("release".into()), audit, last];
    let first_end = events
        .iter()
        .position(|e| matches!(e, Event::End(p) if p == "release" || p.starts_with("audit/") || p.starts_with("last/")))
        .unwrap_or_else(|| panic!("the run's bookkeeping in {events:#?}"));
    for s in &starts {
        assert!(
            position(&events, s) < first_end,
            "{s:?} waited for another bookkeeping write: {events:#?}"
        );
    }
}

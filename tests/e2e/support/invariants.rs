//! The rotation engine's invariants, checked against the emulator's state (its oracles), not
//! against anything the rotator reports about itself.
//!
//! [`check`] is the whole rule for a healthy tenant; [`check_with`] takes [`Allowances`] for
//! consumers a tenant shape breaks on purpose (the fault campaign's), the one place where
//! "in sync" means less.

use std::collections::BTreeMap;

use secret_rotator::policy::{AppRef, Consumer, CredentialPolicy};

use crate::support::world::World;

/// Consumers of one credential broken on purpose (a resource the rotator has no role on, a
/// reference that never resolves, a connection that never reaches Connected or whose PUT ARM
/// refuses): consumer index → (what it held before the first run, whether Entra refused that
/// then). The default allows nothing.
#[derive(Debug, Clone, Default)]
pub struct Allowances {
    pub broken: BTreeMap<usize, (Option<String>, bool)>,
}

/// Everything that must hold for a credential once no run is in flight.
/// `settled`: the grace period is over and the run after it finished, so no password other than
/// the current one (and unmanaged ones) may remain.
pub fn check(world: &World, cred: &CredentialPolicy, settled: bool) -> Result<(), String> {
    check_with(world, cred, settled, &Allowances::default())
}

/// [`check`], except for the broken consumers `allow` names. Such a consumer can never take
/// the new value, so the rotator holds it on its own (README, partial progress) and:
/// - it need not hold the current value once settled, nor report Connected (its status is the
///   breakage, not the rotator's doing); it must still hold a value Entra accepts, or what it
///   held before the first run if Entra refused that already (an expired secret behind a site
///   the rotator may not write; a reference text that never resolved);
/// - the previous password may outlive the grace period: a held consumer may still use it, and
///   a password in use by any consumer is never removed (the check above proves it: a removed
///   password's value is refused). Any other leftover of the rotator's still counts.
pub fn check_with(
    world: &World,
    cred: &CredentialPolicy,
    settled: bool,
    allow: &Allowances,
) -> Result<(), String> {
    let c = world.emu.emulator.control();
    let AppRef::AppId(app_id) = cred.application else {
        return Err("tests name applications by appId".into());
    };
    let kv = &cred.key_vault;
    let (version, value, tags) = c.secret_latest(&kv.vault, &kv.secret).ok_or_else(|| {
        format!(
            "{}: Key Vault secret {}/{} missing",
            cred.name, kv.vault, kv.secret
        )
    })?;
    c.check_client_secret(app_id, &value).map_err(|code| {
        format!(
            "{}: the current Key Vault value (version {version}) is refused: AADSTS{code}",
            cred.name
        )
    })?;
    let passwords = c.passwords(app_id);
    let current = passwords
        .iter()
        .find(|p| p.secret_text == value)
        .ok_or_else(|| format!("{}: no password has the Key Vault value", cred.name))?;
    // The rotator's state, in either of its tag forms (readable or compact).
    let state = secret_rotator::engine::tags::parse(&tags, cred)
        .map_err(|e| format!("{}: {e}", cred.name))?;
    if let Some(t) = &state
        && t.key_id != current.key_id
    {
        return Err(format!(
            "{}: the tags name password {} but the value stored is password {}",
            cred.name, t.key_id, current.key_id
        ));
    }
    for (i, consumer) in cred.consumers.iter().enumerate() {
        let broken = allow.broken.get(&i);
        let held = match consumer {
            Consumer::AppSettingKeyVaultRef { site, setting } => {
                c.app_setting_effective(&site.resource_group, &site.name, setting)
            }
            Consumer::AppSettingValue { site, setting } => {
                c.app_setting(&site.resource_group, &site.name, setting)
            }
            Consumer::ApiConnection {
                connection,
                parameter,
            } => {
                let status = c.connection_status(&connection.resource_group, &connection.name);
                if broken.is_none() && status.as_deref() != Some("Connected") {
                    return Err(format!(
                        "{}: {} status {status:?}",
                        cred.name,
                        consumer.describe()
                    ));
                }
                c.connection_parameter(&connection.resource_group, &connection.name, parameter)
            }
            Consumer::AutomationVariable { account, variable } => {
                c.automation_variable(&account.resource_group, &account.name, variable)
            }
            Consumer::NotifyOnly { .. } => continue,
        };
        let Some(held) = held else {
            return Err(format!(
                "{}: {} holds nothing",
                cred.name,
                consumer.describe()
            ));
        };
        if held != value {
            if let Some((before, refused)) = broken
                && *refused
                && before.as_deref() == Some(held.as_str())
            {
                continue;
            }
            // Holding an older value is allowed only while that value still works.
            c.check_client_secret(app_id, &held).map_err(|code| {
                format!(
                    "{}: {} holds a value Entra refuses (AADSTS{code})",
                    cred.name,
                    consumer.describe()
                )
            })?;
            if settled && broken.is_none() {
                return Err(format!(
                    "{}: {} is not on the current value",
                    cred.name,
                    consumer.describe()
                ));
            }
        }
    }
    let marker = format!("secret-rotator:{}:", cred.name);
    let previous = state.as_ref().and_then(|t| t.previous_key_id);
    for p in &passwords {
        let ours = p
            .display_name
            .as_deref()
            .is_some_and(|d| d.starts_with(&marker));
        let may_stay = Some(p.key_id) == previous && (!settled || !allow.broken.is_empty());
        if ours && p.key_id != current.key_id && !may_stay {
            // The rotator's recorded state, so a finding says which step did not happen.
            let phase = state.as_ref().map(|t| format!("{:?}", t.phase));
            return Err(format!(
                "{}: password {} ({:?}, ends {}) is left over (current {}, recorded previous \
                 {previous:?}, phase {phase:?}, broken consumers {:?})",
                cred.name,
                p.key_id,
                p.display_name,
                p.end,
                current.key_id,
                allow.broken.keys().collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

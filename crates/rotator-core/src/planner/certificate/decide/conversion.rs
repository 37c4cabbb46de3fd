//! Conversion from a client secret: the secret's passwords go only once the certificate is
//! proven and on every one of its own consumers, every consumer of the secret has been seen
//! off it, and the grace period since then has passed.

use super::Builder;
use crate::planner::Phase;
use crate::planner::certificate::model::*;

impl Builder<'_> {
    /// `proven`: the current key is on the application and Entra did not refuse it.
    pub(super) fn conversion(
        &mut self,
        obs: &CertObservation,
        tags: &CertRotationTags,
        proven: bool,
    ) {
        let Some(secret) = self.policy.replaces_secret.clone() else {
            return;
        };
        if tags.conversion == Some(ConversionPhase::Converted) {
            return;
        }
        if tags.phase == Phase::Stored || !proven {
            self.say(format!(
                "Secret credential {secret} stays until the certificate is proven and on every consumer."
            ));
            return;
        }
        let Some(c) = &obs.conversion else {
            self.say(format!(
                "The consumers of secret credential {secret} were not read: it stays."
            ));
            return;
        };
        let not_moved: Vec<String> = c
            .secret_consumers
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m {
                SecretConsumerMove::Moved => None,
                SecretConsumerMove::StillOnSecret { detail } => {
                    Some(format!("consumer #{i} still holds it ({detail})"))
                }
                SecretConsumerMove::Unknown { reason } => {
                    Some(format!("consumer #{i} cannot be read back ({reason})"))
                }
            })
            .collect();
        if !not_moved.is_empty() {
            self.say(format!(
                "Secret credential {secret} stays: {}.",
                not_moved.join("; ")
            ));
            return;
        }
        self.release_or_remove(&secret, c, tags);
    }

    fn release_or_remove(
        &mut self,
        secret: &str,
        c: &ConversionObservation,
        tags: &CertRotationTags,
    ) {
        match tags.conversion {
            None => match self.now.checked_add_signed(self.policy.grace) {
                Some(remove_after) => self.step(
                    CertStep::ReleaseSecret { remove_after },
                    format!(
                        "Every consumer of secret credential {secret} has moved to the certificate: its passwords go after the grace period."
                    ),
                ),
                None => self.block("the end of the grace period is out of range".into()),
            },
            Some(ConversionPhase::SecretReleased { remove_after }) if remove_after > self.now => {
                self.due.push(remove_after);
                self.say(format!(
                    "Secret credential {secret}'s passwords go after {}.",
                    remove_after.format("%Y-%m-%d")
                ));
            }
            Some(ConversionPhase::SecretReleased { .. }) => {
                for key_id in &c.secret_passwords {
                    let step = CertStep::RemoveClientSecret {
                        credential: secret.to_string(),
                        key_id: *key_id,
                    };
                    self.step(step, format!("Remove password {key_id} of {secret}."));
                }
                self.step(
                    CertStep::MarkConverted,
                    format!("Secret credential {secret} is replaced by the certificate."),
                );
            }
            Some(ConversionPhase::Converted) => {}
        }
    }
}

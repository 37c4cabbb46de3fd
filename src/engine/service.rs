//! Builds the engine behind [`crate::handler::service::RotatorService`] from the settings.
//!
//! Placeholder until the engine lands: `build` reports that the engine is not wired, and
//! `serve` keeps answering (SelfTest says why) instead of crash-looping under the host.

use std::sync::Arc;

use crate::handler::service::RotatorService;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine not wired yet")]
    NotWired,
}

pub async fn build(_settings: &Settings) -> Result<Arc<dyn RotatorService>, EngineError> {
    Err(EngineError::NotWired)
}

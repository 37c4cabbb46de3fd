//! The one end-to-end test binary (zero-to-production's `tests/api/main.rs` layout): one module
//! per area, `support` for what they share. One binary links the product once, and every test
//! runs in one process, in parallel.

mod support;

mod azure_clients;
mod bicep_syntax;
mod bicep_types;
mod bookkeeping;
mod certificate_clients;
mod certificate_faults;
mod certificate_permissions;
mod certificates;
mod certificates_status;
mod cli_commands;
mod connection_fidelity;
mod consumer_batch;
mod consumer_ids;
mod dev_mode;
mod fault_campaign;
mod faults;
mod host_clock;
mod host_package;
mod host_router;
mod host_startup;
mod infra_contract;
mod layers;
mod outage_edges;
mod readme;
mod request_budget;
mod secret_hygiene;
mod security;
mod seeds;
mod shared_consumers;
mod slots;
mod specs_schema;
mod status_page_browser;
mod tenant_policies;
mod unenrolled;

//! Integration and end-to-end tests: the real `contextvault` binary, the PostgreSQL it
//! starts, real HTTPS with the appliance's own CA, and headless Chromium. Each test gets
//! its own data directory, cluster and ports, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod access;
mod accounts;
mod acme;
mod api;
mod authz;
mod backups;
mod bad_input;
mod browser;
mod config_cli;
mod crash;
mod export;
mod home;
mod household;
mod http_limits;
mod insights;
mod items;
mod mdns;
mod migrations;
mod notes;
mod schemathesis;
mod search;
mod semantic;
mod settings;
mod snapshots;
mod suggestions;
mod supervision;
mod support;
mod unit_file;
mod vault;
mod vpn;
mod wireguard;
mod workers;

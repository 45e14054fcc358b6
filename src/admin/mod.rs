//! Operator-facing state. For now: `system_config`, the runtime settings store
//! (served by `GET|PUT /admin/config/{key}` once identity provides admin authorization).

pub mod config;

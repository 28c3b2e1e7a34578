//! Payrail: everything that touches the outside world (HTTP, storage, the gateway) around the
//! actor core in `payrail-actors`.

pub mod config;
pub mod console;
pub mod gateway;
pub mod http;
pub mod keys;
pub mod outbound;
pub mod rotation;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod ttl_cache;

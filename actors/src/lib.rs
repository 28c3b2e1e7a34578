//! Payrail's engine core: the pure domain model, the actors that serialize every change, and the
//! ports (storage, gateway, clock) the outside world implements. No HTTP, no SQL.

pub mod actors;
pub mod claims;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod threads;

pub use config::EngineConfig;
pub use engine::Engine;
pub use error::EngineError;

//! Payrail's engine core: the pure domain model, the actors that serialize every change, and the
//! ports (storage, gateway, clock) the outside world implements. No HTTP, no SQL.

pub mod domain;
pub mod memory;
pub mod ports;

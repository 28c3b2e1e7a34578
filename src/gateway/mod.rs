//! The payment gateway seen from Payrail: the HTTP client the engine charges through, the webhook
//! signature scheme both sides share, and the built-in simulator that plays the gateway.

pub mod client;
pub mod reregister;
pub mod signature;

pub use client::{HttpGateway, HttpGatewayConfig};
pub mod simulator;

pub use simulator::{start_simulator, SimulatorConfig, SimulatorHandle};

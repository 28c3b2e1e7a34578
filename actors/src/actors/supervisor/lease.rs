//! Invoice leases: a payment actor asks the supervisor for its invoice's actor once and then
//! talks to it directly, instead of having every settlement relayed through the supervisor.
//!
//! The supervisor counts a lease as a message in flight, so it never passivates (or evicts) an
//! invoice actor that a payment may still address; dropping the lease gives it back. An invoice
//! actor that stopped anyway (a panic, a failed load) shows as a disconnected address: its
//! payments then drop their lease and ask again, and the supervisor starts a new incarnation
//! from storage. A lease is booked like a forwarded message, against the incarnation it was
//! given on (`Booking`): given back after that actor was replaced, it counts for nothing.

use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::{Booking, TenantSupervisor};
use crate::actors::invoice::InvoiceActor;
use crate::domain::InvoiceId;

/// Lend the payment actor asking the actor of invoice `0`, starting it if needed.
#[derive(Message)]
#[rtype(result = "InvoiceLease")]
pub struct LeaseInvoice(pub InvoiceId);

/// An invoice actor's address, held by a payment actor. Giving it back (dropping it) lets the
/// supervisor passivate the invoice once nothing else holds it.
pub struct InvoiceLease {
    addr: Addr<InvoiceActor>,
    booking: Booking,
    supervisor: Addr<TenantSupervisor>,
}

impl InvoiceLease {
    /// The invoice actor's address while that actor runs; `None` once it stopped, when the
    /// lease is worth nothing and the payment asks for a new one.
    pub fn addr(&self) -> Option<&Addr<InvoiceActor>> {
        self.addr.connected().then_some(&self.addr)
    }
}

impl Drop for InvoiceLease {
    fn drop(&mut self) {
        // Not on a money path: a lease lost with a stopped supervisor has nothing to give back.
        self.supervisor.do_send(ReturnLease(self.booking));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReturnLease(Booking);

impl Handler<LeaseInvoice> for TenantSupervisor {
    type Result = MessageResult<LeaseInvoice>;

    fn handle(&mut self, LeaseInvoice(id): LeaseInvoice, ctx: &mut Self::Context) -> Self::Result {
        let (addr, booking) = self.invoice(id, false, Addr::clone);
        self.deps
            .metrics
            .invoice_leases
            .fetch_add(1, Ordering::Relaxed);
        MessageResult(InvoiceLease {
            addr,
            booking,
            supervisor: ctx.address(),
        })
    }
}

impl Handler<ReturnLease> for TenantSupervisor {
    type Result = ();

    fn handle(&mut self, ReturnLease(booking): ReturnLease, _: &mut Self::Context) {
        self.finished(booking);
    }
}

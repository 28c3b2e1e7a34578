//! Stream versions this process's batch writers have committed: a shortcut past the batch
//! pre-check. Every stream has one writer in this process (its entity's actor feeds one audit
//! writer), and that writer has one batch in flight, so a stream's stored version is what was
//! last committed here, unless another process wrote to it meanwhile: then it can only be
//! higher. A unit expecting exactly the version recorded here needs no query, and neither does
//! one creating its stream (expecting version 0 of a stream not recorded here): entity ids are
//! generated fresh. Were the stored version higher, the insert of its first event would break
//! the unique stream/version key and the batch would be re-run, checked in full. A stream
//! recorded at another version, or not recorded and expected past version 0, is read as before.
//! Invoice numbers likewise: a tenant's invoices are numbered by its one supervisor, so a
//! creation taking the number after the last one committed here needs no query; were it taken
//! elsewhere, the unique tenant/number key would refuse it the same way.

use payrail_actors::domain::{IdMap, TenantId};
use payrail_actors::ports::{StoreError, Unit};

use super::plan::{self, Keys, StreamKey, Vouched};
use super::unit_rows::unsnapshotted_invoices;

/// Streams remembered at most; past this the record starts over (it is only a shortcut).
const COMMITTED_STREAMS_MAX: usize = 200_000;

#[derive(Default)]
pub(crate) struct Committed {
    versions: IdMap<StreamKey, u64>,
    /// Each tenant's last invoice number committed here. A creation taking the next one needs
    /// no query either: were it taken elsewhere, the unique tenant/number key would refuse it.
    numbers: IdMap<TenantId, u64>,
}

impl Committed {
    /// What a batch's first attempt pre-checks, trusting this record: its streams not vouched
    /// for here (a stream's creation is vouched for when this record does not hold it) and its
    /// invoice numbers that do not follow the tenant's last one committed here (or one an
    /// earlier creation in the batch takes). Gateway event and idempotency keys are left to
    /// their unique indexes. Also what it vouches for: the versions a stream's first unit in
    /// the batch expects and this record holds, and the numbers the batch's creations follow.
    pub(crate) fn trusting_keys(&self, units: &[Unit]) -> (Keys, Vouched) {
        let mut versions = Vec::new();
        let mut numbers = Vec::new();
        let mut taken_here: IdMap<TenantId, u64> = IdMap::default();
        let keys = plan::version_keys(
            units,
            |stream, expected| {
                // A unit creating its stream expects version 0: its id is new, so nothing is
                // stored under it unless another process took the same id, which the unique
                // stream/version key refuses as it refuses a stale vouched version.
                let trusted = match self.versions.get(&stream) {
                    Some(&committed) => committed == expected,
                    None => expected == 0,
                };
                if trusted {
                    versions.push((stream, expected));
                }
                trusted
            },
            |tenant, n| {
                let Some(before) = n.checked_sub(1).filter(|&before| before > 0) else {
                    return false;
                };
                let follows = if taken_here.get(&tenant) == Some(&before) {
                    true
                } else if self.numbers.get(&tenant) == Some(&before) {
                    numbers.push((tenant, before));
                    true
                } else {
                    false
                };
                if follows {
                    taken_here.insert(tenant, n);
                }
                follows
            },
        );
        (keys, Vouched { versions, numbers })
    }

    /// Records the versions the committed units left their streams at, and the invoice
    /// numbers they took.
    pub(crate) fn record(&mut self, units: &[Unit], results: &[Result<(), StoreError>]) {
        if self.versions.len() > COMMITTED_STREAMS_MAX {
            self.versions.clear();
        }
        for (unit, result) in units.iter().zip(results) {
            let (Some(tenant), Ok(())) = (unit.tenant_id, result) else {
                continue;
            };
            for append in &unit.streams {
                let version = append.expected_version + append.events.len() as u64;
                self.versions.insert((tenant, append.stream), version);
            }
            if let Some(n) = unit.invoice_number() {
                let last = self.numbers.entry(tenant).or_default();
                *last = (*last).max(n);
            }
            // A vouched stream's row is also taken to be current (`Writes::add`): not so for
            // an invoice whose unit left its row behind.
            for stream in unsnapshotted_invoices(unit) {
                self.versions.remove(&(tenant, stream));
            }
        }
    }

    /// Forgets everything: after a batch whose outcome is not known, or that met another
    /// process's write.
    pub(crate) fn clear(&mut self) {
        self.versions.clear();
        self.numbers.clear();
    }
}

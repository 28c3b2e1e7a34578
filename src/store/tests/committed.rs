//! What a batch's first attempt pre-checks when it trusts the versions this process committed.

use crate::store::committed::Committed;
use crate::store::plan;

use super::fixtures::{
    at, attempt_payment, charge_accepted, create_invoice, idempotency, numbered_invoice,
};

/// A stream whose unit expects the version committed here is vouched for and not read; one it
/// has not seen is read; gateway event and idempotency keys are never read, which is what the
/// untrusting check does read.
#[test]
fn trusting_reads_only_the_streams_it_cannot_vouch_for() {
    let tenant = payrail_actors::domain::TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &Default::default());
    let (mut known, attempted) = attempt_payment(&mut invoice, 100, at(1));
    let (mut unknown, _) = attempt_payment(&mut invoice, 100, at(1));
    let mut committed = Committed::default();
    committed.record(&[created, attempted], &[Ok(()), Ok(())]);

    let mut accepted = charge_accepted(&mut known, at(2));
    accepted.idempotency = Some(idempotency("k1", at(2)));
    let units = vec![accepted, charge_accepted(&mut unknown, at(2))];
    let (keys, vouched) = committed.trusting_keys(&units);
    let vouched = vouched.versions;

    let known_stream = units[0].streams[0].stream;
    let unknown_stream = units[1].streams[0].stream;
    assert_eq!(vouched, vec![((tenant, known_stream), 1)]);
    assert_eq!(keys.streams, vec![(tenant, unknown_stream)]);
    assert!(keys.dedup.is_empty() && keys.idempotency.is_empty());

    let all = plan::keys(&units);
    assert_eq!(all.streams.len(), 2);
    assert_eq!(all.dedup.len(), 1, "both charges report gateway event gw_1");
    assert_eq!(all.idempotency.len(), 1);
}

/// A unit creating its stream (version 0 of a stream this process has not committed) is
/// vouched for: entity ids are new. Its invoice number is still read, and so is a stream
/// expected at version 0 that this process did commit.
#[test]
fn a_stream_being_created_is_vouched_for_at_version_0() {
    let tenant = payrail_actors::domain::TenantId::new();
    let (mut invoice, created) = create_invoice(tenant, &Default::default());
    let invoice_stream = (tenant, created.streams[0].stream);
    let mut committed = Committed::default();

    let (keys, vouched) = committed.trusting_keys(std::slice::from_ref(&created));
    assert_eq!(vouched.versions, vec![(invoice_stream, 0)]);
    assert!(keys.streams.is_empty(), "{:?}", keys.streams);
    assert_eq!(keys.numbers.len(), 1, "the invoice's number is read");

    committed.record(std::slice::from_ref(&created), &[Ok(())]);
    let (keys, vouched) = committed.trusting_keys(std::slice::from_ref(&created));
    assert!(vouched.versions.is_empty(), "{vouched:?}");
    assert_eq!(keys.streams, vec![invoice_stream]);

    // A payment's creation: its own stream at 0, its invoice's at the version committed here.
    let (_, attempted) = attempt_payment(&mut invoice, 100, at(1));
    let (keys, vouched) = committed.trusting_keys(std::slice::from_ref(&attempted));
    assert!(keys.streams.is_empty() && keys.numbers.is_empty());
    let mut expected: Vec<_> = attempted
        .streams
        .iter()
        .map(|s| ((tenant, s.stream), s.expected_version))
        .collect();
    let mut vouched = vouched.versions;
    expected.sort_by_key(|(_, v)| *v);
    vouched.sort_by_key(|(_, v)| *v);
    assert_eq!(vouched, expected);
    assert_eq!(vouched[0].1, 0);
}

/// A creation taking the number after the tenant's last one committed here reads no number,
/// nor does one taking the number after an earlier creation in its batch; the number before
/// the first is vouched for. A number that follows nothing committed here is read with the one
/// before it, and so is every number once the record is cleared.
#[test]
fn an_invoice_number_after_the_last_committed_here_is_not_read() {
    let tenant = payrail_actors::domain::TenantId::new();
    let numbered = |number| numbered_invoice(tenant, number).1;
    let mut committed = Committed::default();
    committed.record(&[numbered(1)], &[Ok(())]);

    let (keys, vouched) = committed.trusting_keys(&[numbered(2), numbered(3)]);
    assert!(keys.numbers.is_empty(), "{:?}", keys.numbers);
    assert_eq!(vouched.numbers, vec![(tenant, 1)]);

    let (keys, vouched) = committed.trusting_keys(&[numbered(4)]);
    assert_eq!(keys.numbers, vec![(tenant, 3), (tenant, 4)]);
    assert!(vouched.numbers.is_empty());

    committed.record(
        &[numbered(2), numbered(3)],
        &[
            Ok(()),
            Err(payrail_actors::ports::StoreError::Fenced("3".into())),
        ],
    );
    let (keys, _) = committed.trusting_keys(&[numbered(3)]);
    assert!(keys.numbers.is_empty(), "2 was committed, 3 was not");

    committed.clear();
    let (keys, vouched) = committed.trusting_keys(&[numbered(3)]);
    assert_eq!(keys.numbers, vec![(tenant, 2), (tenant, 3)]);
    assert!(vouched.numbers.is_empty());
}

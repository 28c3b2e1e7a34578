//! `list_invoices` on both SQL backends: every filter, every sort, offset and cursor paging.

use payrail_actors::domain::{EventData, Invoice, InvoiceStatus, TenantId};

use super::fixtures::*;
use crate::store::{Db, InvoiceQuery, InvoiceSort, Paging};

on_both!(list_invoices_filters_sorts_and_pages);

/// Six invoices (A–F by customer initial) plus another tenant's.
pub(super) async fn seed_invoices(db: &Db, tenant: TenantId) -> Vec<Invoice> {
    let specs = [
        (
            "Alice Smith",
            Some("alice@acme.com"),
            "USD",
            1000,
            Some(date(2026, 11, 10)),
            true,
        ),
        (
            "Bob Jones",
            Some("bob@BIGCORP.com"),
            "EUR",
            5000,
            Some(date(2026, 12, 1)),
            true,
        ),
        ("Carol", Some("carol@alice.org"), "USD", 300, None, false),
        ("Dave", None, "USD", 7000, Some(date(2026, 10, 1)), true),
        (
            "Eve",
            Some("eve@x.com"),
            "USD",
            2500,
            Some(date(2026, 11, 20)),
            true,
        ),
        (
            "Frank",
            Some("frank@x.com"),
            "USD",
            2500,
            Some(date(2026, 11, 20)),
            false,
        ),
    ];
    let mut invoices = Vec::new();
    // Numbers are gap-free: carry on after whatever the tenant already has.
    let first = payrail_actors::ports::EventStore::last_invoice_number(db, tenant)
        .await
        .unwrap()
        + 1;
    for (i, (customer, email, currency, amount, due, finalize)) in specs.into_iter().enumerate() {
        let spec = InvoiceSpec {
            number: first + i as u64,
            customer,
            email,
            currency,
            amount,
            due,
            finalize,
            // E and F share a creation time: ties break by id.
            at: at(i.min(4) as i64),
        };
        let (invoice, unit) = create_invoice(tenant, &spec);
        commit(db, vec![unit]).await;
        invoices.push(invoice);
    }
    let dave = &mut invoices[3];
    let void = invoice_change(dave, vec![EventData::InvoiceVoided {}], at(5));
    commit(db, vec![void]).await;
    let (_, other) = create_invoice(
        TenantId::new(),
        &InvoiceSpec {
            customer: "Alice",
            ..Default::default()
        },
    );
    commit(db, vec![other]).await;
    invoices
}

fn initials(items: &[Invoice]) -> String {
    items
        .iter()
        .map(|i| i.details.customer_name.chars().next().unwrap_or('?'))
        .collect()
}

async fn names(db: &Db, tenant: TenantId, q: InvoiceQuery) -> String {
    let page = db.list_invoices(tenant, &q).await.unwrap();
    initials(&page.items)
}

async fn list_invoices_filters_sorts_and_pages(db: Db) {
    let tenant = TenantId::new();
    let invoices = seed_invoices(&db, tenant).await;
    let q = InvoiceQuery::default;
    assert_eq!(names(&db, tenant, q()).await, "FEDCBA");
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                status: Some(InvoiceStatus::Open),
                ..q()
            }
        )
        .await,
        "EBA"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                customer: Some("ALICE".into()),
                ..q()
            }
        )
        .await,
        "CA"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                customer: Some("bigcorp".into()),
                ..q()
            }
        )
        .await,
        "B"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                customer: Some("%".into()),
                ..q()
            }
        )
        .await,
        ""
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                created_from: Some(at(1)),
                created_to: Some(at(3)),
                ..q()
            }
        )
        .await,
        "DCB"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                due_before: Some(date(2026, 11, 15)),
                ..q()
            }
        )
        .await,
        "DA"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                overdue: true,
                today: Some(date(2026, 11, 15)),
                ..q()
            }
        )
        .await,
        "A"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                min_total: Some(1000),
                max_total: Some(5000),
                ..q()
            }
        )
        .await,
        "FEBA"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                currency: "EUR".parse().ok(),
                ..q()
            }
        )
        .await,
        "B"
    );
    assert_eq!(
        names(
            &db,
            tenant,
            InvoiceQuery {
                status: Some(InvoiceStatus::Open),
                currency: "USD".parse().ok(),
                min_total: Some(2000),
                ..q()
            }
        )
        .await,
        "E"
    );

    let sorts = [
        (InvoiceSort::CreatedAt, "ABCDEF"),
        (InvoiceSort::CreatedAtDesc, "FEDCBA"),
        (InvoiceSort::Total, "CAEFBD"),
        (InvoiceSort::TotalDesc, "DBFEAC"),
        (InvoiceSort::DueDate, "DAEFBC"),
        (InvoiceSort::DueDateDesc, "CBFEAD"),
    ];
    for (sort, expected) in sorts {
        assert_eq!(
            names(&db, tenant, InvoiceQuery { sort, ..q() }).await,
            expected,
            "{sort:?}"
        );
        // Cursor mode walks the same order, two at a time.
        let mut walked = String::new();
        let mut after = None;
        loop {
            let page = db
                .list_invoices(
                    tenant,
                    &InvoiceQuery {
                        sort,
                        paging: Paging::Cursor {
                            limit: 2,
                            starting_after: after,
                        },
                        ..q()
                    },
                )
                .await
                .unwrap();
            walked.push_str(&initials(&page.items));
            assert_eq!(page.total_items, None);
            assert_eq!(page.has_more, page.next_cursor.is_some());
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(walked, expected, "cursor {sort:?}");
    }

    let page = |page, page_size| InvoiceQuery {
        paging: Paging::Offset { page, page_size },
        ..q()
    };
    let p2 = db.list_invoices(tenant, &page(2, 4)).await.unwrap();
    assert_eq!(
        (initials(&p2.items).as_str(), p2.total_items),
        ("BA", Some(6))
    );
    let p9 = db.list_invoices(tenant, &page(9, 4)).await.unwrap();
    assert_eq!((p9.items.len(), p9.total_items), (0, Some(6)));
    let clamped = db.list_invoices(tenant, &page(1, 10_000)).await.unwrap();
    assert_eq!(clamped.items.len(), 6);
    // Items are the full snapshots.
    let dave = db
        .list_invoices(
            tenant,
            &InvoiceQuery {
                max_total: Some(7000),
                min_total: Some(7000),
                ..q()
            },
        )
        .await
        .unwrap();
    assert_eq!(dave.items, vec![invoices[3].clone()]);
    assert_eq!(
        db.get_invoice(tenant, invoices[3].id).await.unwrap(),
        Some(invoices[3].clone())
    );
    assert_eq!(
        db.get_invoice(TenantId::new(), invoices[3].id)
            .await
            .unwrap(),
        None
    );
}

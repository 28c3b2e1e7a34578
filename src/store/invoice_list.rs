//! `GET /api/invoices`: every filter, every sort (ties by id), offset and cursor paging.

use payrail_actors::domain::TenantId;
use payrail_actors::ports::StoreError;

use super::model::{InvoicePage, InvoiceQuery, InvoiceSort, Paging, LIST_LIMIT_MAX};
use super::queries::page_bounds;
use super::rows::{snapshot_columns, CountRow, DataRow};
use super::stmt::{Bind, Dialect, Stmt};
use super::Db;

/// Escapes LIKE wildcards so `customer` is matched as a plain substring.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn filters(d: Dialect, tenant: TenantId, q: &InvoiceQuery) -> (String, Vec<Bind>) {
    let mut sql = String::from("i.tenant_id = ?");
    let mut binds = vec![Bind::Text(tenant.to_string())];
    let mut add = |clause: String, values: Vec<Bind>| {
        sql.push_str(" AND ");
        sql.push_str(&clause);
        binds.extend(values);
    };
    if let Some(status) = q.status {
        add("i.status = ?".into(), vec![Bind::text(status.as_str())]);
    }
    if let Some(customer) = q.customer.as_deref().filter(|c| !c.is_empty()) {
        let pattern = like_pattern(customer);
        let like = d.ilike();
        add(
            format!(
                "(i.customer_name {like} ? ESCAPE '\\' OR i.customer_email {like} ? ESCAPE '\\')"
            ),
            vec![Bind::Text(pattern.clone()), Bind::Text(pattern)],
        );
    }
    if let Some(from) = q.created_from {
        add("i.created_at >= ?".into(), vec![Bind::ts(from)]);
    }
    if let Some(to) = q.created_to {
        add("i.created_at <= ?".into(), vec![Bind::ts(to)]);
    }
    if let Some(before) = q.due_before {
        add("i.due_date < ?".into(), vec![Bind::date(before)]);
    }
    if q.overdue {
        let today = q.today.unwrap_or_else(|| chrono::Utc::now().date_naive());
        add(
            "i.status = 'open' AND i.due_date < ?".into(),
            vec![Bind::date(today)],
        );
    }
    if let Some(min) = q.min_total {
        add("i.total >= ?".into(), vec![Bind::I64(min)]);
    }
    if let Some(max) = q.max_total {
        add("i.total <= ?".into(), vec![Bind::I64(max)]);
    }
    if let Some(currency) = q.currency {
        add("i.currency = ?".into(), vec![Bind::text(currency.as_str())]);
    }
    (sql, binds)
}

/// `ORDER BY` for the sort, and the keyset `(key, id)` comparison for cursor paging: a missing
/// due date sorts after every date, in both directions' sense (`NULLS LAST` ascending).
fn ordering(d: Dialect, sort: InvoiceSort) -> (String, String, &'static str) {
    let due = |t: &str| format!("COALESCE({t}.due_date, {})", d.date_max());
    let (order, key, cmp) = match sort {
        InvoiceSort::CreatedAt => ("i.created_at ASC, i.id ASC", "{t}.created_at".into(), ">"),
        InvoiceSort::CreatedAtDesc => {
            ("i.created_at DESC, i.id DESC", "{t}.created_at".into(), "<")
        }
        InvoiceSort::Total => ("i.total ASC, i.id ASC", "{t}.total".into(), ">"),
        InvoiceSort::TotalDesc => ("i.total DESC, i.id DESC", "{t}.total".into(), "<"),
        InvoiceSort::DueDate => ("i.due_date ASC NULLS LAST, i.id ASC", due("{t}"), ">"),
        InvoiceSort::DueDateDesc => ("i.due_date DESC NULLS FIRST, i.id DESC", due("{t}"), "<"),
    };
    (order.to_owned(), key, cmp)
}

impl Db {
    pub async fn list_invoices(
        &self,
        tenant: TenantId,
        q: &InvoiceQuery,
    ) -> Result<InvoicePage, StoreError> {
        let d = self.dialect();
        let (mut filter, mut binds) = filters(d, tenant, q);
        let (order, key, cmp) = ordering(d, q.sort);
        let select = format!(
            "SELECT {} FROM invoices i WHERE ",
            snapshot_columns(d, "invoices", "i.")
        );
        match &q.paging {
            Paging::Offset { page, page_size } => {
                let (limit, offset) = page_bounds(*page, *page_size);
                let total: Vec<CountRow> = self
                    .load(Stmt::new(
                        format!("SELECT count(*) AS n FROM invoices i WHERE {filter}"),
                        binds.clone(),
                    ))
                    .await?;
                binds.extend([Bind::I64(limit), Bind::I64(offset)]);
                let rows: Vec<DataRow> = self
                    .load(Stmt::new(
                        format!("{select}{filter} ORDER BY {order} LIMIT ? OFFSET ?"),
                        binds,
                    ))
                    .await?;
                Ok(InvoicePage {
                    items: rows
                        .iter()
                        .map(DataRow::invoice)
                        .collect::<Result<_, _>>()?,
                    total_items: Some(total.first().map(|r| r.n.max(0) as u64).unwrap_or(0)),
                    has_more: false,
                    next_cursor: None,
                })
            }
            Paging::Cursor {
                limit,
                starting_after,
            } => {
                let limit = limit.clamp(&1, &LIST_LIMIT_MAX);
                if let Some(after) = starting_after {
                    filter.push_str(&format!(
                        " AND ({}, i.id) {cmp} (SELECT {}, c.id FROM invoices c \
                         WHERE c.tenant_id = ? AND c.id = ?)",
                        key.replace("{t}", "i"),
                        key.replace("{t}", "c")
                    ));
                    binds.extend([
                        Bind::Text(tenant.to_string()),
                        Bind::Text(after.to_string()),
                    ]);
                }
                binds.push(Bind::I64(i64::from(*limit) + 1));
                let rows: Vec<DataRow> = self
                    .load(Stmt::new(
                        format!("{select}{filter} ORDER BY {order} LIMIT ?"),
                        binds,
                    ))
                    .await?;
                let mut items: Vec<_> = rows
                    .iter()
                    .map(DataRow::invoice)
                    .collect::<Result<_, _>>()?;
                let has_more = items.len() > *limit as usize;
                items.truncate(*limit as usize);
                Ok(InvoicePage {
                    next_cursor: if has_more {
                        items.last().map(|i| i.id)
                    } else {
                        None
                    },
                    items,
                    total_items: None,
                    has_more,
                })
            }
        }
    }
}

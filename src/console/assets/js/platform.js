// Platform view (admin token): the tenants, a page at a time, each with its volumes.

import { api, query } from './api.js';
import { h, show, table, pager, when, alertBox } from './dom.js';

const PAGE_SIZE = 20;

export async function platformView(params, go) {
  const page = Math.max(Number(params.get('page')) || 1, 1);
  const list = await api(`/api/tenants${query({ page, pageSize: PAGE_SIZE })}`);
  const volumes = await Promise.all(list.items.map((t) =>
    api(`/api/tenants/${t.id}/volumes`).catch((error) => ({ error }))));
  const rows = list.items.map((tenant, i) => {
    const v = volumes[i];
    const count = (n) => (v.error ? '—' : n.toLocaleString());
    return [tenant.name, h('code', {}, tenant.id), when(tenant.createdAt),
      count(v.invoices), count(v.payments), count(v.refunds), count(v.events)];
  });
  const failed = volumes.find((v) => v.error);
  show(
    h('h1', {}, 'Tenants'),
    h('p', {}, `${list.totalItems} tenant${list.totalItems === 1 ? '' : 's'}, oldest first.`),
    failed ? alertBox(failed.error) : null,
    table('Tenants and their volumes',
      ['Name', 'Id', 'Created', 'Invoices', 'Payments', 'Refunds', 'Audit events'],
      rows, [3, 4, 5, 6]),
    pager('Tenant pages', list.page, list.totalPages, (p) => go(`#/platform?page=${p}`)),
  );
}

// Tenant view: invoices with every filter of GET /api/invoices, paged.

import { api, query } from './api.js';
import { h, show, table, pager, money, when, badge } from './dom.js';

const STATUSES = ['draft', 'open', 'paid', 'void', 'uncollectible'];
const SORTS = [['-createdAt', 'Newest first'], ['createdAt', 'Oldest first'],
  ['-total', 'Largest total'], ['total', 'Smallest total'],
  ['dueDate', 'Due soonest'], ['-dueDate', 'Due latest']];
const FILTERS = ['status', 'customer', 'currency', 'createdFrom', 'createdTo', 'dueBefore',
  'overdue', 'minTotal', 'maxTotal', 'sort', 'pageSize'];

/** `datetime-local` values are local times; the API wants RFC 3339. */
function toRfc3339(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

function field(label, input) {
  return h('label', {}, label, input);
}

function filterForm(params, go) {
  const value = (name) => params.get(name) || '';
  const form = h('form', { class: 'filters', 'aria-label': 'Invoice filters' },
    field('Status', h('select', { name: 'status' },
      h('option', { value: '' }, 'Any'),
      STATUSES.map((s) => h('option', { value: s, selected: value('status') === s }, s)))),
    field('Customer', h('input', { name: 'customer', type: 'search', value: value('customer'), maxlength: 200 })),
    field('Currency', h('input', { name: 'currency', value: value('currency'), size: 4, maxlength: 3, pattern: '[A-Za-z]{3}' })),
    field('Created from', h('input', { name: 'createdFrom', type: 'datetime-local', value: value('createdFromLocal') })),
    field('Created to', h('input', { name: 'createdTo', type: 'datetime-local', value: value('createdToLocal') })),
    field('Due before', h('input', { name: 'dueBefore', type: 'date', value: value('dueBefore') })),
    field('Min total (minor units)', h('input', { name: 'minTotal', type: 'number', min: 0, value: value('minTotal') })),
    field('Max total (minor units)', h('input', { name: 'maxTotal', type: 'number', min: 0, value: value('maxTotal') })),
    field('Sort', h('select', { name: 'sort' },
      SORTS.map(([v, label]) => h('option', { value: v, selected: (value('sort') || '-createdAt') === v }, label)))),
    field('Per page', h('select', { name: 'pageSize' },
      [10, 20, 50, 100].map((n) => h('option', { value: n, selected: Number(value('pageSize') || 10) === n }, n)))),
    h('label', { class: 'check' }, h('input', { name: 'overdue', type: 'checkbox', checked: value('overdue') === 'true' }), 'Overdue only'),
    h('button', { type: 'submit' }, 'Apply filters'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const v = data.get(name);
      if (name === 'overdue') { if (v) next.set('overdue', 'true'); continue; }
      if (v) next.set(name, String(v).trim());
    }
    for (const name of ['createdFrom', 'createdTo']) {
      if (next.has(name)) {
        next.set(`${name}Local`, next.get(name));
        next.set(name, toRfc3339(next.get(name)));
      }
    }
    if (next.has('currency')) next.set('currency', next.get('currency').toUpperCase());
    go(`#/invoices?${next}`);
  });
  return form;
}

export async function invoicesView(params, go) {
  const page = Math.max(Number(params.get('page')) || 1, 1);
  const apiParams = { page };
  for (const name of FILTERS) apiParams[name] = params.get(name);
  const list = await api(`/api/invoices${query(apiParams)}`);
  const rows = list.items.map((inv) => [
    h('a', { href: `#/invoices/${inv.id}` }, inv.number),
    inv.customerName, badge(inv.status), money(inv.total, inv.currency),
    money(inv.amountRemaining, inv.currency), when(inv.createdAt), inv.dueDate || '—']);
  const pageTo = (p) => {
    const next = new URLSearchParams(params);
    next.set('page', p);
    go(`#/invoices?${next}`);
  };
  show(
    h('h1', {}, 'Invoices'),
    filterForm(params, go),
    h('p', { role: 'status' }, `${list.totalItems} invoice${list.totalItems === 1 ? '' : 's'} match.`),
    table('Invoices', ['Number', 'Customer', 'Status', 'Total', 'Remaining', 'Created', 'Due'], rows, [3, 4]),
    pager('Invoice pages', list.page, list.totalPages, pageTo),
  );
}

// Tenant view: payments (filtered and paged), and one payment with its refunds and timeline.

import { api, query } from './api.js';
import { h, show, table, pager, money, when, badge } from './dom.js';
import { timelineList } from './invoice.js';

const STATUSES = ['processing', 'succeeded', 'failed', 'partially_refunded', 'refunded'];

export async function paymentsView(params, go) {
  const page = Math.max(Number(params.get('page')) || 1, 1);
  const status = params.get('status') || '';
  const invoiceId = params.get('invoiceId') || '';
  const list = await api(`/api/payments${query({ page, pageSize: 20, status, invoiceId })}`);
  const form = h('form', { class: 'filters', 'aria-label': 'Payment filters' },
    h('label', {}, 'Status', h('select', { name: 'status' }, h('option', { value: '' }, 'Any'),
      STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)))),
    h('label', {}, 'Invoice id', h('input', { name: 'invoiceId', value: invoiceId, size: 32 })),
    h('button', { type: 'submit' }, 'Apply filters'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    go(`#/payments${query({ status: data.get('status'), invoiceId: String(data.get('invoiceId')).trim() })}`);
  });
  const pageTo = (p) => go(`#/payments${query({ page: p, status, invoiceId })}`);
  show(
    h('h1', {}, 'Payments'),
    form,
    h('p', { role: 'status' }, `${list.totalItems} payment${list.totalItems === 1 ? '' : 's'} match.`),
    table('Payments, oldest first', ['Payment', 'Invoice', 'Status', 'Amount', 'Refunded', 'Created'],
      list.items.map((p) => [h('a', { href: `#/payments/${p.id}` }, p.id),
        h('a', { href: `#/invoices/${p.invoiceId}` }, p.invoiceId), badge(p.status),
        money(p.amount, p.currency), money(p.amountRefunded, p.currency), when(p.createdAt)]),
      [3, 4]),
    pager('Payment pages', list.page, list.totalPages, pageTo),
  );
}

export async function paymentView(id) {
  const [payment, timeline] = await Promise.all([
    api(`/api/payments/${encodeURIComponent(id)}`),
    api(`/api/payments/${encodeURIComponent(id)}/timeline`),
  ]);
  const refunds = timeline.filter((e) => e.eventType.startsWith('refund.'));
  const method = payment.paymentMethod || {};
  show(
    h('h1', {}, `Payment ${payment.id} `, badge(payment.status)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Invoice'), h('dd', {}, h('a', { href: `#/invoices/${payment.invoiceId}` }, payment.invoiceId)),
      h('dt', {}, 'Amount'), h('dd', {}, money(payment.amount, payment.currency)),
      h('dt', {}, 'Refunded'), h('dd', {}, money(payment.amountRefunded, payment.currency)),
      h('dt', {}, 'Card'), h('dd', {}, method.brand ? `${method.brand} ····${method.last4}` : '—'),
      h('dt', {}, 'Gateway reference'), h('dd', {}, payment.gatewayReference || '—'),
      h('dt', {}, 'Failure'), h('dd', {}, payment.failureCode ? `${payment.failureCode}: ${payment.failureMessage || ''}` : '—'),
      h('dt', {}, 'Created'), h('dd', {}, when(payment.createdAt))),
    h('h2', {}, 'Refunds'),
    table('Refund events', ['Event', 'Refund', 'Amount', 'When'],
      refunds.map((e) => [e.eventType, h('code', {}, e.subjectId),
        e.data && e.data.amount !== undefined ? money(e.data.amount, payment.currency) : '—',
        when(e.occurredAt)]), [2]),
    h('h2', {}, 'Timeline'),
    timelineList(timeline),
  );
}

// One invoice: its totals, lines, payments and a timeline that follows the live event stream.
// A related event (the invoice's own, or one of its payments' or refunds') reloads the parts
// that change, in place, without reloading the page or moving focus.

import { api } from './api.js';
import { follow } from './events.js';
import { h, show, table, money, when, badge, announce } from './dom.js';

const REFRESH_DELAY_MS = 150;

function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

function totals(inv) {
  const m = (amount) => money(amount, inv.currency);
  return facts([['Subtotal', m(inv.subtotal)], [`Tax (${inv.taxRateBps / 100}%)`, m(inv.tax)],
    ['Total', m(inv.total)], ['Paid', m(inv.amountPaid)], ['Pending', m(inv.amountPending)],
    ['Remaining', m(inv.amountRemaining)], ['Refunded', m(inv.amountRefunded)]]);
}

function paymentsTable(payments) {
  return table('Payments of this invoice', ['Payment', 'Status', 'Amount', 'Refunded', 'Card', 'Created'],
    payments.map((p) => [h('a', { href: `#/payments/${p.id}` }, p.id), badge(p.status),
      money(p.amount, p.currency), money(p.amountRefunded, p.currency),
      p.paymentMethod ? `${p.paymentMethod.brand} ····${p.paymentMethod.last4}` : '—',
      when(p.createdAt)]), [2, 3]);
}

export function timelineList(events) {
  return h('ol', { class: 'timeline', 'aria-label': 'Timeline, oldest first' },
    events.map((e) => h('li', { 'data-sequence': e.sequence },
      h('strong', {}, e.eventType), ' · ', when(e.occurredAt), ' · ',
      h('code', {}, e.subjectId), ' · by ', e.actor)));
}

export async function invoiceView(id, onLeave) {
  const load = () => Promise.all([
    api(`/api/invoices/${encodeURIComponent(id)}`),
    api(`/api/invoices/${encodeURIComponent(id)}/timeline`),
    api(`/api/payments?invoiceId=${encodeURIComponent(id)}&pageSize=100`),
  ]);
  let [invoice, timeline, payments] = await load();
  const details = (inv) => facts([['Id', h('code', {}, inv.id)], ['Customer', inv.customerName],
    ['Email', inv.customerEmail || '—'], ['Created', when(inv.createdAt)],
    ['Finalized', when(inv.finalizedAt)], ['Due', inv.dueDate || '—'], ['Paid', when(inv.paidAt)]]);
  const status = h('span', {}, badge(invoice.status));
  const detailsBox = h('div', {}, details(invoice));
  const totalsBox = h('div', {}, totals(invoice));
  const paymentsBox = h('div', {}, paymentsTable(payments.items));
  const timelineBox = h('div', {}, timelineList(timeline));
  const live = h('p', { class: 'live' }, 'Live updates: connecting…');
  show(
    h('h1', {}, `Invoice ${invoice.number} `, status),
    detailsBox,
    h('h2', {}, 'Totals'), totalsBox,
    h('h2', {}, 'Lines'),
    table('Line items', ['Description', 'Quantity', 'Unit amount', 'Amount'],
      invoice.lineItems.map((l) => [l.description, l.quantity,
        money(l.unitAmount, invoice.currency), money(l.amount, invoice.currency)]), [1, 2, 3]),
    h('h2', {}, 'Payments'), paymentsBox,
    h('h2', {}, 'Timeline'), live, timelineBox,
  );

  const related = (event) => {
    if (event.subjectId === id || timeline.some((e) => e.subjectId === event.subjectId)) return true;
    return JSON.stringify(event.data).includes(id);
  };
  let pending = null;
  const refresh = () => {
    pending = pending || setTimeout(async () => {
      pending = null;
      try {
        [invoice, timeline, payments] = await load();
      } catch {
        return;
      }
      status.replaceChildren(badge(invoice.status));
      detailsBox.replaceChildren(details(invoice));
      totalsBox.replaceChildren(totals(invoice));
      paymentsBox.replaceChildren(paymentsTable(payments.items));
      timelineBox.replaceChildren(timelineList(timeline));
    }, REFRESH_DELAY_MS);
  };
  const after = timeline.reduce((max, e) => Math.max(max, e.sequence), 0);
  const stop = follow({
    after,
    onEvent(event) {
      if (!related(event)) return;
      announce(`New on this invoice: ${event.eventType}`);
      refresh();
    },
    onState(state, reason) {
      live.textContent = {
        live: 'Live updates: on.',
        reconnecting: 'Live updates: reconnecting…',
        closed: `Live updates: closed by the server (${reason || 'no reason'}).`,
      }[state] || live.textContent;
      // A reconnect may have missed nothing, but a reload is cheap and certain.
      if (state === 'live') refresh();
    },
  });
  onLeave(stop);
}

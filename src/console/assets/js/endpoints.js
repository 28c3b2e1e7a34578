// Tenant view: outbound webhook endpoints, and one endpoint with its delivery attempts (filtered
// by status, newest first, cursor-paged with a "more" button). The API never returns an
// endpoint's secret after creation, so none is ever shown here.

import { api, query } from './api.js';
import { h, show, table, when, badge, alertBox } from './dom.js';

const ATTEMPT_STATUSES = ['succeeded', 'pending', 'failed'];
const PAGE_SIZES = [10, 20, 50, 100];
const DEFAULT_PAGE_SIZE = 20;

function eventTypes(types) {
  return types.length ? types.join(', ') : 'all';
}

export async function endpointsView() {
  const list = await api('/api/webhook-endpoints');
  show(
    h('h1', {}, 'Webhook endpoints'),
    h('p', { role: 'status' }, `${list.items.length} endpoint${list.items.length === 1 ? '' : 's'}.`),
    table('Webhook endpoints, oldest first', ['URL', 'Description', 'Event types', 'Status', 'Created'],
      list.items.map((e) => [h('a', { href: `#/endpoints/${e.id}` }, e.url), e.description || '—',
        eventTypes(e.eventTypes), badge(e.status), when(e.createdAt)])),
  );
}

function attemptRows(items) {
  return items.map((a) => [h('code', {}, a.eventId), a.attempt, badge(a.status),
    // Without an answer the body says why (timeout, connection failed).
    a.responseStatus ?? (a.responseBody || '—'), `${a.durationMs} ms`,
    when(a.attemptedAt), when(a.nextAttemptAt)]);
}

function attemptsTable(items) {
  return table('Delivery attempts, newest first',
    ['Event', 'Attempt', 'Status', 'Response', 'Duration', 'Attempted at', 'Next attempt at'],
    attemptRows(items), [1, 3, 4]);
}

export async function endpointView(id, params, go) {
  const status = ATTEMPT_STATUSES.includes(params.get('status')) ? params.get('status') : '';
  const wanted = Number(params.get('limit'));
  const limit = PAGE_SIZES.includes(wanted) ? wanted : DEFAULT_PAGE_SIZE;
  const path = `/api/webhook-endpoints/${encodeURIComponent(id)}`;
  const [endpoint, first] = await Promise.all([
    api(path),
    api(`${path}/attempts${query({ status, limit })}`),
  ]);
  const items = [...first.items];
  let cursor = first.hasMore ? first.nextCursor : null;

  const form = h('form', { class: 'filters', 'aria-label': 'Attempt filters' },
    h('label', {}, 'Status', h('select', { name: 'status' }, h('option', { value: '' }, 'Any'),
      ATTEMPT_STATUSES.map((s) => h('option', { value: s, selected: s === status }, s)))),
    h('label', {}, 'Per page', h('select', { name: 'limit' },
      PAGE_SIZES.map((n) => h('option', { value: n, selected: n === limit }, n)))),
    h('button', { type: 'submit' }, 'Apply filters'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    go(`#/endpoints/${encodeURIComponent(id)}${query({ status: data.get('status'), limit: data.get('limit') })}`);
  });

  const counted = () => `${items.length} attempt${items.length === 1 ? '' : 's'} shown${cursor ? '; more are older' : ''}.`;
  const count = h('p', { role: 'status' }, counted());
  const tableBox = h('div', {}, attemptsTable(items));
  const moreBox = h('div', { class: 'pager' });
  const error = h('div', {});
  const more = h('button', { type: 'button', class: 'secondary' }, 'More attempts');
  more.addEventListener('click', async () => {
    more.disabled = true;
    error.replaceChildren();
    let page;
    try {
      page = await api(`${path}/attempts${query({ status, limit, startingAfter: cursor })}`);
    } catch (failure) {
      more.disabled = false;
      error.replaceChildren(alertBox(failure));
      return;
    }
    items.push(...page.items);
    cursor = page.hasMore ? page.nextCursor : null;
    tableBox.replaceChildren(attemptsTable(items));
    // A status region: screen readers hear the new count without focus moving.
    count.textContent = counted();
    if (cursor) {
      more.disabled = false;
      more.focus();
    } else {
      // The button goes; focus stays on the page, at the note that replaces it.
      const done = h('p', { tabindex: '-1' }, 'All attempts shown.');
      moreBox.replaceChildren(done);
      done.focus();
    }
  });
  if (cursor) moreBox.replaceChildren(more);

  show(
    h('h1', {}, `Endpoint ${endpoint.id} `, badge(endpoint.status)),
    h('dl', { class: 'facts' },
      h('dt', {}, 'URL'), h('dd', {}, h('code', {}, endpoint.url)),
      h('dt', {}, 'Description'), h('dd', {}, endpoint.description || '—'),
      h('dt', {}, 'Event types'), h('dd', {}, eventTypes(endpoint.eventTypes)),
      h('dt', {}, 'Status'), h('dd', {}, endpoint.status),
      h('dt', {}, 'Created'), h('dd', {}, when(endpoint.createdAt))),
    h('h2', {}, 'Delivery attempts'),
    form,
    count,
    tableBox,
    error,
    moreBox,
  );
}

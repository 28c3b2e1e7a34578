// DOM helpers: elements are built with text nodes only, so nothing from the API is ever parsed
// as HTML.

/** `h('a', {href: '#/x', class: 'y', onclick: f}, 'text', child)` */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'for') el.htmlFor = value;
    else if (name === 'value') el.value = value;
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the page's content and moves focus to its heading, as a page load would. */
export function show(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children);
  const heading = main.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
}

/** Says something to screen readers without moving focus. */
export function announce(text) {
  const region = document.getElementById('announcer');
  region.textContent = '';
  setTimeout(() => { region.textContent = text; }, 30);
}

const digits = new Map();
function fractionDigits(currency) {
  if (!digits.has(currency)) {
    try {
      const f = new Intl.NumberFormat('en', { style: 'currency', currency });
      digits.set(currency, f.resolvedOptions().maximumFractionDigits);
    } catch {
      digits.set(currency, 2);
    }
  }
  return digits.get(currency);
}

/** An amount in minor units as money: `money(3300, 'USD')` → `$33.00`. */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return '—';
  const d = fractionDigits(currency);
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).format(amount / 10 ** d);
  } catch {
    return `${(amount / 10 ** d).toFixed(d)} ${currency}`;
  }
}

/** An RFC 3339 timestamp in the reader's locale; '—' for none. */
export function when(ts) {
  if (!ts) return '—';
  const date = new Date(ts);
  return Number.isNaN(date.getTime()) ? ts : date.toLocaleString();
}

export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/** A problem (or any error) as an alert. */
export function alertBox(error) {
  return h('div', { class: 'alert', role: 'alert' }, error.message || String(error));
}

/** A table with a caption and column headers; `rows` are arrays of cells. */
export function table(caption, headers, rows, numeric = []) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((title, i) =>
      h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : null }, title)))),
    h('tbody', {}, rows.length
      ? rows.map((cells) => h('tr', {}, cells.map((cell, i) =>
        h('td', { class: numeric.includes(i) ? 'num' : null }, cell))))
      : h('tr', {}, h('td', { colspan: headers.length }, 'Nothing to show.'))));
}

/** Previous/next buttons for an offset page `{page, totalPages}`. */
export function pager(label, page, totalPages, go) {
  return h('nav', { class: 'pager', 'aria-label': label },
    h('button', { type: 'button', class: 'secondary', disabled: page <= 1, onclick: () => go(page - 1) }, 'Previous page'),
    h('span', {}, `Page ${page} of ${Math.max(totalPages, 1)}`),
    h('button', { type: 'button', class: 'secondary', disabled: page >= totalPages, onclick: () => go(page + 1) }, 'Next page'));
}

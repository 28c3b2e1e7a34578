// The console's shell: sign-in, navigation by URL fragment (#/invoices, #/invoices/inv_…,
// #/endpoints/we_…, …) and one view at a time. Each view reads the public API with the
// signed-in credential.

import { credential, signIn, signOut } from './api.js';
import { h, show, alertBox, announce } from './dom.js';
import { platformView } from './platform.js';
import { invoicesView } from './invoices.js';
import { invoiceView } from './invoice.js';
import { paymentsView, paymentView } from './payments.js';
import { endpointsView, endpointView } from './endpoints.js';
import { intakeView } from './intake.js';
import { systemView } from './system.js';

const SECTIONS = {
  tenant: [['#/invoices', 'Invoices'], ['#/payments', 'Payments'], ['#/endpoints', 'Endpoints'], ['#/intake', 'Webhook intake'], ['#/system', 'System']],
  admin: [['#/platform', 'Tenants'], ['#/system', 'System']],
};

let leaving = [];
function onLeave(stop) { leaving.push(stop); }

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function signInView(message) {
  const input = h('input', { id: 'credential', name: 'credential', type: 'password', autocomplete: 'off', required: true, 'aria-describedby': 'credential-help' });
  const error = h('div', {});
  const form = h('form', { class: 'signin', 'aria-label': 'Sign in' },
    h('label', { for: 'credential' }, 'API key or platform admin token'),
    input,
    h('p', { id: 'credential-help' }, 'A tenant API key (prk_…) opens that tenant; the admin token opens the platform view. '
      + 'It is kept in this tab only and sent to this server only.'),
    error,
    h('button', { type: 'submit' }, 'Sign in'));
  if (message) error.replaceChildren(alertBox(message));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    try {
      const kind = await signIn(input.value.trim());
      go(kind === 'tenant' ? '#/invoices' : '#/platform');
    } catch (failure) {
      error.replaceChildren(alertBox(failure));
      input.focus();
    }
  });
  show(h('h1', {}, 'Sign in'), form);
}

function frame(current) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!current) {
    nav.hidden = true;
    who.replaceChildren();
    return;
  }
  const here = location.hash.split('?')[0];
  nav.hidden = false;
  nav.replaceChildren(h('ul', {}, SECTIONS[current.kind].map(([href, text]) =>
    h('li', {}, h('a', { href, 'aria-current': here.startsWith(href) ? 'page' : null }, text)))));
  who.replaceChildren(
    h('span', {}, current.kind === 'tenant' ? 'Signed in with a tenant API key' : 'Signed in as platform admin'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { signOut(); go('#/signin'); } }, 'Sign out'));
}

async function route() {
  leaving.forEach((stop) => stop());
  leaving = [];
  const current = credential();
  const [path, search] = location.hash.slice(1).split('?');
  const params = new URLSearchParams(search || '');
  frame(current);
  if (!current) {
    signInView();
    return;
  }
  const parts = (path || '').split('/').filter(Boolean);
  try {
    if (current.kind === 'admin') {
      if (parts[0] === 'system') await systemView(onLeave);
      else if (parts[0] === 'platform') await platformView(params, go);
      else go('#/platform');
      return;
    }
    if (parts[0] === 'invoices' && parts[1]) await invoiceView(parts[1], onLeave);
    else if (parts[0] === 'invoices') await invoicesView(params, go);
    else if (parts[0] === 'payments' && parts[1]) await paymentView(parts[1]);
    else if (parts[0] === 'payments') await paymentsView(params, go);
    else if (parts[0] === 'endpoints' && parts[1]) await endpointView(parts[1], params, go);
    else if (parts[0] === 'endpoints') await endpointsView();
    else if (parts[0] === 'intake') await intakeView(onLeave);
    else if (parts[0] === 'system') await systemView(onLeave);
    else go('#/invoices');
  } catch (error) {
    if (!credential()) return;
    show(h('h1', {}, 'Something went wrong'), alertBox(error));
  }
}

window.addEventListener('hashchange', route);
window.addEventListener('payrail:signed-out', (event) => {
  announce('Signed out: the server refused the credential.');
  frame(null);
  signInView(`Signed out: ${event.detail}`);
});
route();

// Tenant view: webhook intake over the last minutes (GET /api/webhooks/intake), as a chart and
// as totals.

import { api } from './api.js';
import { lineChart } from './charts.js';
import { h, show, table } from './dom.js';

const POLL_MS = 5000;
const OUTCOMES = ['received', 'applied', 'duplicates', 'ignored', 'rejected'];

export async function intakeView(onLeave) {
  const chart = lineChart('Gateway events per 10 seconds', OUTCOMES, { points: 1000 });
  const totals = h('div', {});
  show(
    h('h1', {}, 'Webhook intake'),
    h('p', {}, 'What the payment gateway reported to this server for this tenant over the last '
      + '15 minutes, and what became of it. Counted in memory since the server started.'),
    chart.figure,
    totals,
  );
  async function load() {
    const intake = await api('/api/webhooks/intake');
    const times = intake.buckets.map((b) => Date.parse(b.start) / 1000);
    chart.replace(times, OUTCOMES.map((o) => intake.buckets.map((b) => b[o])));
    const sums = OUTCOMES.map((o) => intake.buckets.reduce((sum, b) => sum + b[o], 0));
    totals.replaceChildren(table('Totals over the last 15 minutes', OUTCOMES.map((o) => o[0].toUpperCase() + o.slice(1)),
      [sums.map((n) => n.toLocaleString())], [0, 1, 2, 3, 4]));
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), POLL_MS);
  onLeave(() => clearInterval(timer));
}

// System view: the server's own numbers from /metrics, sampled every few seconds, as charts:
// request rate, commit batch sizes and latency, queue depths, live actors.

import { scrape, total } from './metrics.js';
import { lineChart } from './charts.js';
import { h, show, alertBox } from './dom.js';

const POLL_MS = 2000;

function label(name) {
  return (labels) => labels.includes(`kind="${name}"`);
}

export async function systemView(onLeave) {
  const charts = {
    requests: lineChart('HTTP requests per second', ['requests/s', 'errors/s']),
    batches: lineChart('Group commits', ['commits/s', 'units per commit']),
    latency: lineChart('Commit latency (mean per commit)', ['ms'], { unit: ' ms' }),
    queues: lineChart('Queue depths', ['audit writer queue', 'commands in flight', 'charges awaiting gateway']),
    actors: lineChart('Live actors and streams', ['invoices', 'payments', 'tenant supervisors', 'event streams']),
  };
  const problem = h('div', {});
  show(
    h('h1', {}, 'System'),
    h('p', {}, `This server's own metrics (/metrics), sampled every ${POLL_MS / 1000} seconds while this page is open.`),
    problem,
    h('div', { class: 'charts' }, Object.values(charts).map((c) => c.figure)),
  );
  let previous = null;
  async function sample() {
    let m;
    try {
      m = await scrape();
      problem.replaceChildren();
    } catch (error) {
      problem.replaceChildren(alertBox(error));
      return;
    }
    const now = Date.now() / 1000;
    const current = {
      at: now,
      requests: total(m, 'payrail_http_requests_total'),
      errors: total(m, 'payrail_http_requests_total', (l) => /status="5/.test(l)),
      batches: total(m, 'payrail_commit_batches_total'),
      units: total(m, 'payrail_commit_units_total'),
      micros: total(m, 'payrail_commit_duration_microseconds_total'),
    };
    charts.queues.push(now, [total(m, 'payrail_audit_queue_depth'),
      total(m, 'payrail_commands_in_flight'), total(m, 'payrail_charges_awaiting_gateway')]);
    charts.actors.push(now, [total(m, 'payrail_active_actors', label('invoice')),
      total(m, 'payrail_active_actors', label('payment')),
      total(m, 'payrail_active_actors', label('supervisor')), total(m, 'payrail_event_streams')]);
    if (previous) {
      const dt = Math.max(current.at - previous.at, 0.001);
      const batches = current.batches - previous.batches;
      charts.requests.push(now, [(current.requests - previous.requests) / dt,
        (current.errors - previous.errors) / dt]);
      charts.batches.push(now, [batches / dt,
        batches > 0 ? (current.units - previous.units) / batches : null]);
      charts.latency.push(now, [batches > 0 ? (current.micros - previous.micros) / batches / 1000 : null]);
    }
    previous = current;
  }
  await sample();
  const timer = setInterval(sample, POLL_MS);
  onLeave(() => clearInterval(timer));
}

// Reads /metrics (Prometheus text) into a map of series → value.

/** `{ 'name{label="x"}': 12, 'name': 3 }` from the exposition text. */
export function parseMetrics(text) {
  const samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    const value = Number(line.slice(space + 1));
    if (!Number.isNaN(value)) samples.set(line.slice(0, space), value);
  }
  return samples;
}

/** The sum of every series of `name` (all label sets), or of those whose labels match `filter`. */
export function total(samples, name, filter = () => true) {
  let sum = 0;
  for (const [series, value] of samples) {
    const brace = series.indexOf('{');
    const base = brace < 0 ? series : series.slice(0, brace);
    if (base === name && filter(brace < 0 ? '' : series.slice(brace))) sum += value;
  }
  return sum;
}

export async function scrape() {
  const response = await fetch('/metrics', { credentials: 'omit', cache: 'no-store' });
  if (!response.ok) throw new Error(`/metrics answered ${response.status}`);
  return parseMetrics(await response.text());
}

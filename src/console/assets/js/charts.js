// Time-series charts on uPlot (vendored). Each chart is a figure with a caption, an
// accessible name, and the latest values as text, so nothing is only in the picture.

import uPlot from '../vendor/uplot/uPlot.esm.js';
import { h } from './dom.js';

/** Colours with at least 4.5:1 contrast on white. */
const COLOURS = ['#1d4ed8', '#15803d', '#b45309', '#7e22ce', '#b91c1c', '#0e7490'];

/**
 * A line chart of `series` (labels) over time, keeping the last `points` samples.
 * Answers `{figure, push(seconds, values), replace(times, columns)}`.
 */
export function lineChart(title, series, { points = 90, unit = '' } = {}) {
  const latest = h('p', { class: 'latest' }, 'No data yet.');
  const plotArea = h('div', { 'aria-hidden': 'true' });
  const figure = h('figure', { class: 'chart', role: 'group', 'aria-label': title },
    h('figcaption', {}, title), plotArea, latest);
  const data = [[], ...series.map(() => [])];
  let plot = null;

  function describe() {
    const last = data[0].length - 1;
    if (last < 0) return;
    latest.textContent = 'Latest: ' + series.map((label, i) => {
      const v = data[i + 1][last];
      return `${label} ${v === null || v === undefined ? '—' : +v.toFixed(2)}${unit}`;
    }).join(', ');
  }

  function draw() {
    if (!figure.isConnected) return;
    const width = Math.max(plotArea.clientWidth || figure.clientWidth - 16, 300);
    if (!plot) {
      plot = new uPlot({
        width,
        height: 220,
        series: [{}, ...series.map((label, i) => ({
          label, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true,
        }))],
        axes: [{}, { size: 60 }],
        scales: { x: { time: true } },
        legend: { live: false },
      }, data, plotArea);
    } else {
      if (plot.width !== width) plot.setSize({ width, height: 220 });
      plot.setData(data);
    }
    describe();
  }

  return {
    figure,
    push(seconds, values) {
      data[0].push(seconds);
      values.forEach((v, i) => data[i + 1].push(v));
      if (data[0].length > points) data.forEach((column) => column.shift());
      draw();
    },
    replace(times, columns) {
      data[0] = times;
      columns.forEach((column, i) => { data[i + 1] = column; });
      draw();
    },
  };
}

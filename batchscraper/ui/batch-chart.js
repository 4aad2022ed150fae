// Two small inline-SVG charts: pages per minute over time (the batch's `timeline`: items
// finished per UTC minute) and failed items by error code. No library, no inline style (the
// CSP forbids it): sizes are SVG attributes, colours are classes.

import { h, replace } from './dom.js';
import { count } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';
const MAX_BARS = 60; // longer runs: several minutes per bar (their mean per minute)
const WIDTH = 600;
const HEIGHT = 120;
const BAR_HEIGHT = 18;
const MAX_BAR_WIDTH = 24; // a short run's few bars stay bars
const LEFT = 64; // room for the scale
const LABEL_WIDTH = 110; // room for a time below the bars

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child);
  }
  return el;
}

export function chartPanel() {
  const section = h('section', { id: 'charts', class: 'panel charts', hidden: true });
  let known = null; // the last timeline a poll brought
  let drawn = '';
  return {
    element: section,
    // `timeline`: { minute: items }, or undefined when this poll did not bring it
    draw(timeline, failures) {
      if (timeline !== undefined) known = timeline;
      if (known === null) return;
      const signature = JSON.stringify([known, failures]);
      if (signature === drawn) return;
      drawn = signature;
      timeline = known;
      const codes = Object.entries(failures || {}).filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
      const minutes = Object.keys(timeline || {}).map(Number).filter(Number.isFinite);
      section.hidden = !minutes.length && !codes.length;
      replace(section,
        h('div', { class: 'chart' }, h('h3', {}, 'Pages per minute'), progressChart(timeline || {}, minutes)),
        codes.length ? h('div', { class: 'chart' }, h('h3', {}, 'Failures by code'), failuresChart(codes)) : null);
    },
  };
}

// Bars per minute (or per `step` minutes), first to last minute with work, gaps as zeros.
function progressChart(timeline, minutes) {
  if (!minutes.length) return h('p', { class: 'muted' }, 'Nothing finished yet.');
  const first = Math.min(...minutes);
  const span = Math.max(...minutes) - first + 1;
  const step = Math.ceil(span / MAX_BARS);
  const bars = [];
  for (let start = first; start < first + span; start += step) {
    let items = 0;
    for (let minute = start; minute < start + step; minute += 1) items += timeline[minute] || 0;
    bars.push({ start, items, rate: items / step });
  }
  const top = Math.max(...bars.map((bar) => bar.rate), 1);
  const width = Math.min((WIDTH - LEFT) / bars.length, MAX_BAR_WIDTH);
  const label = (minute) => new Date(minute * 60_000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return svg('svg', {
    id: 'chart-progress', viewBox: `0 0 ${WIDTH} ${HEIGHT + 16}`, role: 'img', preserveAspectRatio: 'xMinYMin meet',
    'aria-label': `Pages per minute, at most ${Math.round(top)}`,
  },
  bars.map((bar, n) => {
    const height = Math.max((HEIGHT * bar.rate) / top, bar.items ? 1 : 0);
    return svg('rect', {
      class: 'bar-done', x: LEFT + n * width + 0.5, y: HEIGHT - height, width: Math.max(width - 1, 1),
      height, 'data-minute': bar.start, 'data-count': bar.items,
    }, svg('title', {}, `${label(bar.start)}: ${bar.rate.toFixed(1)} pages/min`));
  }),
  svg('line', { class: 'axis', x1: LEFT, y1: HEIGHT + 0.5, x2: WIDTH, y2: HEIGHT + 0.5 }),
  svg('text', { class: 'axis-label', x: LEFT - 4, y: 10, 'text-anchor': 'end' }, `${Math.round(top)}/min`),
  svg('text', { class: 'axis-label', x: LEFT - 4, y: HEIGHT, 'text-anchor': 'end' }, '0'),
  svg('text', { class: 'axis-label', x: LEFT, y: HEIGHT + 13 }, label(first)),
  bars.length * width > LABEL_WIDTH
    ? svg('text', { class: 'axis-label', x: LEFT + bars.length * width, y: HEIGHT + 13, 'text-anchor': 'end' },
      label(first + span - 1))
    : null);
}

function failuresChart(codes) {
  const top = codes[0][1];
  const labelWidth = 170;
  return svg('svg', {
    id: 'chart-failures', viewBox: `0 0 ${WIDTH} ${codes.length * (BAR_HEIGHT + 4)}`, role: 'img', preserveAspectRatio: 'xMinYMin meet',
    'aria-label': 'Failed items by error code',
  },
  codes.map(([code, n], row) => {
    const y = row * (BAR_HEIGHT + 4);
    const width = Math.max(((WIDTH - labelWidth - 60) * n) / top, 1);
    return svg('g', { 'data-code': code, 'data-count': n },
      svg('text', { class: 'bar-label', x: labelWidth - 6, y: y + 13, 'text-anchor': 'end' }, code),
      svg('rect', { class: 'bar-failed', x: labelWidth, y, width, height: BAR_HEIGHT },
        svg('title', {}, `${code}: ${count(n)} item(s)`)),
      svg('text', { class: 'bar-label', x: labelWidth + width + 6, y: y + 13 }, count(n)));
  }));
}

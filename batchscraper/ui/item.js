// One item in a dialog: its record as JSON text, evidence, validation, error, screenshot.

import { badge, externalLink, field, h, replace } from './dom.js';
import { count, dateTime, duration, json, tokens, usd } from './format.js';

const dialog = document.getElementById('item-dialog');
const body = document.getElementById('item-body');
let screenshotUrl = null;

dialog.addEventListener('close', () => {
  if (screenshotUrl) URL.revokeObjectURL(screenshotUrl);
  screenshotUrl = null;
  replace(body);
});

// The item at input position `index`, read whole (content included) when it is opened.
export async function openIndex(index, ctx, batchPath) {
  const answer = await ctx.api.json('GET', `${batchPath}/items`, {
    query: { page: index + 1, limit: 1, include: 'content' },
  });
  if (!ctx.closed && answer.items.length) openItem(answer.items[0], ctx, batchPath);
}

export function openItem(item, ctx, batchPath) {
  const error = item.error;
  const screenshot = h('div', { id: 'item-screenshot' });
  replace(body,
    h('h2', { id: 'item-title' }, `Item ${item.index} `, badge(item.status)),
    h('p', { class: 'url' }, externalLink(item.url)),
    error
      ? h('div', { class: 'banner banner-error', id: 'item-error' },
        h('strong', { class: 'mono' }, error.code), ' ', error.message,
        error.retryable ? h('span', { class: 'muted' }, ' (retryable)') : null)
      : null,
    h('dl', { class: 'grid' },
      field('render mode', item.render_mode),
      field('render reason', item.render_reason),
      field('HTTP status', item.http_status),
      field('final URL', item.final_url),
      field('attempts', item.attempts),
      field('duration', duration(item.duration_ms)),
      field('started', dateTime(item.started_at)),
      field('finished', dateTime(item.finished_at)),
      field('LLM calls', count(item.llm_calls)),
      field('tokens', tokens(item)),
      field('cost', usd(item.cost_usd)),
      field('records filtered out', item.filtered_out ? count(item.filtered_out) : null)),
    h('h3', {}, 'Record'),
    h('pre', { class: 'json', id: 'item-record' }, json(item.data ?? null)),
    evidenceTable(item.evidence),
    validation(item.validation),
    item.extraction
      ? h('details', {}, h('summary', {}, 'How it was extracted'),
        h('pre', { class: 'json' }, json(item.extraction)))
      : null,
    content(item.content),
    h('h3', {}, 'Screenshot'),
    screenshot);
  dialog.showModal();
  if (item.screenshot) {
    replace(screenshot, h('p', { class: 'muted' }, 'Loading…'));
    showScreenshot(screenshot, ctx, `${batchPath}/items/${item.index}/screenshot`, item.index)
      .catch((failure) => replace(screenshot, h('p', { class: 'muted' }, failure.message)));
  } else {
    replace(screenshot, h('p', { class: 'muted' },
      'None (only browser renders with "screenshot": true take one).'));
  }
}

async function showScreenshot(target, ctx, path, index) {
  const png = await ctx.api.blob(path);
  if (!dialog.open) return;
  screenshotUrl = URL.createObjectURL(png);
  replace(target, h('img', { src: screenshotUrl, alt: `Screenshot of item ${index}`, class: 'screenshot' }));
}

function evidenceTable(evidence) {
  const entries = Object.entries(evidence || {});
  if (!entries.length) return h('p', { class: 'muted' }, 'No per-field evidence.');
  return [
    h('h3', {}, 'Evidence'),
    h('table', { class: 'compact', id: 'item-evidence' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'Source'))),
      h('tbody', {}, entries.map(([name, source]) => h('tr', {},
        h('td', { class: 'mono' }, name),
        h('td', {}, typeof source === 'string' ? source : JSON.stringify(source)))))),
  ];
}

function validation(result) {
  if (!result) return null;
  const errors = result.errors || [];
  return [
    h('h3', {}, 'Validation'),
    h('p', { id: 'item-valid' }, result.valid ? 'Valid against the schema.' : `${errors.length} error(s):`),
    errors.length
      ? h('ul', { id: 'item-validation-errors' }, errors.map((error) => h('li', {},
        h('span', { class: 'mono' }, error.path || '(root)'), ': ', error.message,
        error.record ? ` (record ${error.record})` : '')))
      : null,
  ];
}

// Kept page content is shown as text: HTML stays source, never markup.
function content(kept) {
  const entries = Object.entries(kept || {});
  if (!entries.length) return null;
  return [h('h3', {}, 'Content'), entries.map(([format, text]) =>
    h('details', {}, h('summary', {}, format), h('pre', { class: 'content' }, String(text))))];
}

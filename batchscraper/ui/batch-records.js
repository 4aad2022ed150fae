// The Records tab: one row per item, one column per schema field (nested objects as a.b,
// arrays compact), sorted and filtered by the API (pages of 50: a 10,000-item batch stays
// quick), each value's source on hover, the fields that failed validation marked.

import { badge, h, replace } from './dom.js';
import { count } from './format.js';
import { openIndex } from './item.js';
import { LivePage } from './live-page.js';

const PAGE_SIZE = 50;
const FIELDS = 'index,url,status,data,evidence,validation,error';
const STATUSES = ['', 'pending', 'leased', 'running', 'completed', 'failed', 'cancelled'];
const ARRAY_SHOWN = 3;
const MATCH_DELAY_MS = 300;

// `columns`: the schema's field paths
export function recordsPanel(ctx, path, columns) {
  const state = { page: 1, status: '', sort: '', descending: false, field: columns[0] || '', text: '' };
  const live = new LivePage(ctx.api, path, FIELDS);
  const statusFilter = h('select', { id: 'records-status' },
    STATUSES.map((value) => h('option', { value }, value || 'all')));
  const fieldFilter = h('select', { id: 'records-field' },
    columns.map((name) => h('option', { value: name }, name)));
  const matchInput = h('input', { type: 'search', id: 'records-match', placeholder: 'contains…' });
  const head = h('thead');
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Record pages' });
  const summary = h('span', { class: 'muted', id: 'records-summary' });

  const query = () => ({
    page: state.page,
    limit: PAGE_SIZE,
    status: state.status,
    sort: state.sort ? `${state.descending ? '-' : ''}data.${state.sort}` : '',
    match: state.text ? `data.${state.field}:${state.text}` : '',
  });
  const reload = () => live.load(query()).then((moved) => { if (moved) draw(); })
    .catch((error) => ctx.fail(error));
  const sortBy = (column) => {
    // ascending, then descending, then input order again
    if (state.sort !== column) Object.assign(state, { sort: column, descending: false });
    else if (!state.descending) state.descending = true;
    else Object.assign(state, { sort: '', descending: false });
    state.page = 1;
    reload();
  };
  statusFilter.addEventListener('change', () => {
    Object.assign(state, { status: statusFilter.value, page: 1 });
    reload();
  });
  let typing = null;
  const matchChanged = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      Object.assign(state, { field: fieldFilter.value, text: matchInput.value.trim(), page: 1 });
      reload();
    }, MATCH_DELAY_MS);
  };
  matchInput.addEventListener('input', matchChanged);
  fieldFilter.addEventListener('change', () => { if (matchInput.value.trim()) matchChanged(); });

  const headerCell = (column) => {
    const sorted = state.sort === column;
    const arrow = sorted ? (state.descending ? ' ▼' : ' ▲') : '';
    return h('th', {
      scope: 'col', 'aria-sort': sorted ? (state.descending ? 'descending' : 'ascending') : 'none',
      dataset: { field: column },
    }, h('button', { type: 'button', onclick: () => sortBy(column) }, column, arrow));
  };
  const draw = () => {
    const pages = Math.max(1, Math.ceil(live.total / PAGE_SIZE));
    const pageButton = (page, label) => h('button', {
      type: 'button', class: 'link', onclick: () => { state.page = page; reload(); },
    }, label);
    replace(head, h('tr', {},
      h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'Status'), columns.map(headerCell)));
    replace(summary, `${count(live.total)} record${live.total === 1 ? '' : 's'}`);
    replace(rows, live.items.length
      ? live.items.map((item) => recordRow(item, columns, () => openIndex(item.index, ctx, path)
        .catch((error) => ctx.fail(error))))
      : h('tr', {}, h('td', { colspan: columns.length + 2, class: 'empty' }, 'No records match.')));
    replace(pager,
      state.page > 1 ? pageButton(state.page - 1, '‹ Previous') : null,
      h('span', {}, `Page ${state.page} of ${pages}`),
      state.page < pages ? pageButton(state.page + 1, 'Next ›') : null);
  };

  return {
    element: h('section', { id: 'records' },
      h('div', { class: 'toolbar' },
        h('h2', {}, 'Records'),
        h('label', {}, 'Status ', statusFilter),
        h('label', {}, 'Field ', fieldFilter, ' ', matchInput),
        summary),
      h('div', { class: 'scroll' }, h('table', { id: 'records-table', class: 'records' }, head, rows)),
      pager),
    async load() {
      await live.load(query());
      draw();
    },
    async sync() {
      if (await live.sync()) draw();
    },
  };
}

function recordRow(item, columns, open) {
  const record = Array.isArray(item.data) ? item.data[0] : item.data;
  const extra = Array.isArray(item.data) && item.data.length > 1 ? item.data.length - 1 : 0;
  const failed = failedPaths(item.validation);
  return h('tr', {
    class: `clickable${item.status === 'failed' ? ' row-failed' : ''}`,
    tabindex: 0,
    dataset: { index: item.index, status: item.status },
    title: item.error ? `${item.error.code}: ${item.error.message}` : item.url,
    onclick: open,
    onkeydown: (event) => { if (event.key === 'Enter') open(); },
  },
  h('td', { class: 'num' }, item.index, extra ? h('span', { class: 'muted small' }, ` +${extra}`) : null),
  h('td', {}, badge(item.status)),
  columns.map((column) => fieldCell(record, column, item.evidence, failed)));
}

function fieldCell(record, column, evidence, failed) {
  const value = valueAt(record, column);
  const bad = failed.some((path) => path === column || path.startsWith(`${column}.`));
  const source = sourceOf(evidence, column);
  const classes = [bad ? 'field-failed' : '', value === undefined || value === null ? 'field-missing' : '']
    .filter(Boolean).join(' ');
  return h('td', {
    class: classes || undefined,
    title: [source ? `source: ${source}` : '', bad ? 'failed validation' : ''].filter(Boolean).join(' · ') || undefined,
    dataset: { field: column },
  }, compact(value));
}

function valueAt(record, column) {
  let value = record;
  for (const key of column.split('.')) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    value = value[key];
  }
  return value;
}

// The evidence of a field: its own, or its top-level object's.
function sourceOf(evidence, column) {
  if (!evidence || typeof evidence !== 'object') return '';
  const found = evidence[column] ?? evidence[column.split('.')[0]];
  if (found === undefined || found === null) return '';
  return typeof found === 'string' ? found : JSON.stringify(found);
}

// The validation errors' field paths, without a list page's record number.
function failedPaths(validation) {
  return (validation?.errors || [])
    .map((error) => String(error.path || '').replaceAll('/', '.').replace(/^\d+\./, ''));
}

function compact(value) {
  if (value === undefined || value === null) return '–';
  if (Array.isArray(value)) {
    const shown = value.slice(0, ARRAY_SHOWN).map((entry) => (typeof entry === 'object' ? JSON.stringify(entry) : String(entry)));
    const more = value.length > ARRAY_SHOWN ? ` … +${value.length - ARRAY_SHOWN}` : '';
    return `[${shown.join(', ')}${more}]`;
  }
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

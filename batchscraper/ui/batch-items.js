// A batch's items: a page of them in input order, filtered by status and error code.

import { badge, h, replace } from './dom.js';
import { count, duration, tokens } from './format.js';
import { openItem } from './item.js';

export const PAGE_SIZE = 50;
export const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/; // what the API's error_code filter takes
const ITEM_FILTERS = ['', 'pending', 'running', 'completed', 'failed', 'cancelled'];

// `address`: the page's query (status, code, page); `changed()` runs when the filters or the
// page change (the caller syncs the address and reloads).
export function itemsPanel(ctx, path, address, changed) {
  const state = {
    status: ITEM_FILTERS.includes(address.get('status')) ? address.get('status') : '',
    // a code the API would refuse (400 on every poll) is dropped
    code: ERROR_CODE.test(address.get('code') || '') ? address.get('code') : '',
    page: Math.max(1, Number.parseInt(address.get('page'), 10) || 1),
    items: [],
    total: 0,
  };
  if (state.code) state.status = 'failed';

  const statusFilter = h('select', { id: 'item-status-filter' },
    ITEM_FILTERS.map((value) => h('option', { value }, value || 'all')));
  statusFilter.value = state.status;
  const codeFilter = h('select', { id: 'item-code-filter' });
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Item pages' });
  const summary = h('span', { class: 'muted', id: 'items-summary' });

  const setFilters = (status, code) => {
    state.status = code ? 'failed' : status;
    state.code = state.status === 'failed' ? code : '';
    state.page = 1;
    statusFilter.value = state.status;
    changed();
  };
  const goPage = (page) => {
    state.page = page;
    changed();
  };
  statusFilter.addEventListener('change', () => setFilters(statusFilter.value, ''));
  codeFilter.addEventListener('change', () => setFilters(state.status, codeFilter.value));

  return {
    element: h('section', { class: 'items' },
      h('div', { class: 'toolbar' },
        h('h2', {}, 'Items'),
        h('label', {}, 'Status ', statusFilter),
        h('label', {}, 'Error code ', codeFilter),
        summary),
      h('table', { id: 'items' },
        h('thead', {}, h('tr', {},
          ['#', 'URL', 'Status', 'Render', 'HTTP', 'Error', 'Message', 'Duration', 'Tokens']
            .map((name) => h('th', { scope: 'col' }, name)))),
        rows),
      pager),
    setFilters,
    // what the API is asked for: one page with the filters
    query: () => ({
      page: state.page, limit: PAGE_SIZE, status: state.status, error_code: state.code,
    }),
    address() {
      const query = new URLSearchParams();
      if (state.status) query.set('status', state.status);
      if (state.code) query.set('code', state.code);
      if (state.page > 1) query.set('page', state.page);
      return query;
    },
    show(items, total) {
      state.items = items;
      state.total = total;
    },
    // `counts`: [code, failed items] pairs, most first
    drawCodeFilter(counts) {
      const known = new Set(counts.map(([code]) => code));
      if (state.code) known.add(state.code);
      replace(codeFilter,
        h('option', { value: '' }, 'any'),
        [...known].sort().map((code) => h('option', { value: code }, code)));
      codeFilter.value = state.code;
    },
    draw() {
      const pages = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
      const pageButton = (page, label) =>
        h('button', { type: 'button', class: 'link', onclick: () => goPage(page) }, label);
      replace(summary, `${count(state.total)} item${state.total === 1 ? '' : 's'}`);
      replace(rows, state.items.length
        ? state.items.map((item) => itemRow(item, () => openItem(item, ctx, path)))
        : h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No items match.')));
      replace(pager,
        state.page > 1 ? pageButton(state.page - 1, '‹ Previous') : null,
        h('span', {}, `Page ${state.page} of ${pages}`),
        state.page < pages ? pageButton(state.page + 1, 'Next ›') : null);
    },
  };
}

function itemRow(item, open) {
  const error = item.error || {};
  return h('tr', {
    class: 'clickable',
    tabindex: 0,
    dataset: { index: item.index, status: item.status },
    onclick: open,
    onkeydown: (event) => { if (event.key === 'Enter') open(); },
  },
  h('td', { class: 'num' }, item.index),
  h('td', { class: 'clip url', title: item.url }, item.url),
  h('td', {}, badge(item.status)),
  h('td', {}, item.render_mode || '–'),
  h('td', { class: 'num' }, item.http_status ?? '–'),
  h('td', { class: 'mono' }, error.code || ''),
  h('td', { class: 'clip', title: error.message || '' }, error.message || ''),
  h('td', { class: 'num' }, duration(item.duration_ms)),
  h('td', { class: 'num' }, tokens(item)));
}

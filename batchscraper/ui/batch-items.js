// A batch's items: a page of them in input order, filtered by status and error code.

import { badge, h, replace } from './dom.js';
import { count, duration, tokens } from './format.js';
import { openIndex } from './item.js';
import { LivePage } from './live-page.js';

export const PAGE_SIZE = 50;
export const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/; // what the API's error_code filter takes
const ITEM_FILTERS = ['', 'pending', 'leased', 'running', 'completed', 'failed', 'cancelled'];
const FIELDS = 'index,url,status,render_mode,http_status,error,duration_ms,tokens';

// `address`: the page's query (status, code, page); `changed()` runs when the filters or the
// page changed (the caller syncs the address); the panel reads its page itself.
export function itemsPanel(ctx, path, address, changed) {
  const state = {
    status: ITEM_FILTERS.includes(address.get('status')) ? address.get('status') : '',
    // a code the API would refuse (400 on every poll) is dropped
    code: ERROR_CODE.test(address.get('code') || '') ? address.get('code') : '',
    page: Math.max(1, Number.parseInt(address.get('page'), 10) || 1),
  };
  const live = new LivePage(ctx.api, path, FIELDS);
  if (state.code) state.status = 'failed';

  const statusFilter = h('select', { id: 'item-status-filter' },
    ITEM_FILTERS.map((value) => h('option', { value }, value || 'all')));
  statusFilter.value = state.status;
  const codeFilter = h('select', { id: 'item-code-filter' });
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Item pages' });
  const summary = h('span', { class: 'muted', id: 'items-summary' });

  const query = () => ({
    page: state.page, limit: PAGE_SIZE, status: state.status, error_code: state.code,
  });
  const reload = () => {
    changed();
    live.load(query()).then((moved) => { if (moved) draw(); }).catch((error) => ctx.fail(error));
  };
  const setFilters = (status, code) => {
    state.status = code ? 'failed' : status;
    state.code = state.status === 'failed' ? code : '';
    state.page = 1;
    statusFilter.value = state.status;
    if (state.code && ![...codeFilter.options].some((option) => option.value === state.code)) {
      codeFilter.append(h('option', { value: state.code }, state.code));
    }
    codeFilter.value = state.code; // a finished batch's page is not redrawn to show it
    reload();
  };
  const goPage = (page) => {
    state.page = page;
    reload();
  };
  const draw = () => {
    const pages = Math.max(1, Math.ceil(live.total / PAGE_SIZE));
    const pageButton = (page, label) =>
      h('button', { type: 'button', class: 'link', onclick: () => goPage(page) }, label);
    replace(summary, `${count(live.total)} item${live.total === 1 ? '' : 's'}`);
    replace(rows, live.items.length
      ? live.items.map((item) => itemRow(item, () => open(item.index)))
      : h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No items match.')));
    replace(pager,
      state.page > 1 ? pageButton(state.page - 1, '‹ Previous') : null,
      h('span', {}, `Page ${state.page} of ${pages}`),
      state.page < pages ? pageButton(state.page + 1, 'Next ›') : null);
  };
  const open = (index) => openIndex(index, ctx, path).catch((error) => ctx.fail(error));
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
    address() {
      const query = new URLSearchParams();
      if (state.status) query.set('status', state.status);
      if (state.code) query.set('code', state.code);
      if (state.page > 1) query.set('page', state.page);
      return query;
    },
    // the first read of the page, then its updates (when the batch's counters moved)
    async load() {
      await live.load(query());
      draw();
    },
    async sync() {
      if (await live.sync()) draw();
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

// The batches list: newest first, paginated, filtered by status, searched by words (id, name,
// tags, domains, field names), refreshed while shown.

import { badge, h, progressBar, replace } from './dom.js';
import { age, count, usd } from './format.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 5000;
const SEARCH_DELAY_MS = 300;
const FILTERS = ['', 'pending', 'running', 'completed', 'partial', 'failed', 'cancelled'];
const COLUMNS = ['Batch', 'Status', 'Progress', 'Failed', 'Records', 'Cost', 'Age', 'URLs',
  'Domains', 'Fields'];
const SHOWN_FIELDS = 6;

export async function renderList(view, ctx) {
  const status = FILTERS.includes(ctx.query.get('status')) ? ctx.query.get('status') : '';
  const state = {
    page: Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1),
    search: (ctx.query.get('q') || '').slice(0, 200),
  };
  const link = (query) => `#/?${new URLSearchParams(query)}`;
  const filters = () => ({ ...(status ? { status } : {}), ...(state.search ? { q: state.search } : {}) });

  const filter = h('select', {
    id: 'status-filter',
    onchange: () => ctx.navigate(link({ ...filters(), status: filter.value })),
  }, FILTERS.map((value) => h('option', { value, selected: value === status }, value || 'all')));
  const search = h('input', {
    type: 'search', id: 'batch-search', value: state.search, maxlength: 200,
    placeholder: 'name, tag, domain, field…', 'aria-label': 'Search batches',
  });
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const summary = h('p', { class: 'muted', id: 'list-summary' });

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Batches'),
      h('label', {}, 'Status ', filter),
      search,
      h('a', { class: 'button primary', href: '#/new' }, 'New batch')),
    summary,
    h('table', { class: 'batches', id: 'batches' },
      h('thead', {}, h('tr', {}, COLUMNS.map((name) => h('th', { scope: 'col' }, name)))),
      rows),
    pager);

  const refresh = async () => {
    const answer = await ctx.api.json('GET', 'batches', {
      query: { page: state.page, limit: PAGE_SIZE, status, q: state.search },
    });
    if (ctx.closed) return;
    const { total, total_pages: pages } = answer.pagination;
    replace(summary, `${count(total)} batch${total === 1 ? '' : 'es'}${status ? ` ${status}` : ''}`
      + `${state.search ? ` matching “${state.search}”` : ''}`);
    replace(rows, answer.batches.length
      ? answer.batches.map(batchRow)
      : h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' },
        state.search ? 'No batch matches.' : 'No batches yet.')));
    const { page } = state;
    replace(pager,
      page > 1 ? h('a', { href: link({ ...filters(), page: page - 1 }), rel: 'prev' }, '‹ Newer') : null,
      h('span', {}, `Page ${page} of ${Math.max(pages, 1)}`),
      page < pages ? h('a', { href: link({ ...filters(), page: page + 1 }), rel: 'next' }, 'Older ›') : null);
  };

  let typing = null;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.search = search.value.trim();
      state.page = 1;
      const query = new URLSearchParams(filters());
      history.replaceState(null, '', `#/${query.size ? `?${query}` : ''}`); // keeps the focus
      refresh().catch((error) => ctx.fail(error));
    }, SEARCH_DELAY_MS);
  });
  await refresh();
  ctx.every(REFRESH_MS, refresh);
}

function batchRow(batch) {
  const counters = batch.counters;
  const overview = batch.overview || {};
  const fields = overview.fields || [];
  const domains = overview.domains || [];
  return h('tr', { dataset: { batchId: batch.batch_id } },
    h('td', {},
      batch.name ? h('div', { class: 'batch-name' }, batch.name) : null,
      h('a', { href: `#/batches/${encodeURIComponent(batch.batch_id)}`, class: 'mono' }, batch.batch_id),
      batch.tags?.length
        ? h('div', { class: 'tags' }, batch.tags.map((tag) => h('span', { class: 'tag' }, tag)))
        : null),
    h('td', {}, badge(batch.status)),
    h('td', { class: 'progress-cell' },
      progressBar(counters, batch.progress),
      h('span', { class: 'muted small' },
        `${count(batch.progress.done)} / ${count(batch.total)} · ${batch.progress.percent}%`)),
    h('td', { class: 'num' }, count(counters.failed)),
    h('td', { class: 'num' }, count(counters.records_extracted)),
    h('td', { class: 'num' }, usd(counters.cost_usd)),
    h('td', { title: batch.created_at }, age(batch.created_at)),
    h('td', { class: 'num', dataset: { cell: 'urls' } }, count(batch.total)),
    h('td', { class: 'small', dataset: { cell: 'domains' } }, domains.length
      ? [domains.map((entry) => `${entry.domain} (${count(entry.urls)})`).join(', '),
        overview.domain_count > domains.length ? ` +${overview.domain_count - domains.length} more` : '']
      : '–'),
    h('td', { class: 'small mono', dataset: { cell: 'fields' }, title: fields.join(', ') },
      fields.length
        ? `${fields.slice(0, SHOWN_FIELDS).join(', ')}${fields.length > SHOWN_FIELDS ? ', …' : ''}`
        : '–'));
}

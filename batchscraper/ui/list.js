// The batches list: newest first, paginated, filtered by status, refreshed while shown.

import { badge, h, progressBar, replace } from './dom.js';
import { age, count, usd } from './format.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 5000;
const FILTERS = ['', 'pending', 'running', 'completed', 'partial', 'failed', 'cancelled'];

export async function renderList(view, ctx) {
  const status = FILTERS.includes(ctx.query.get('status')) ? ctx.query.get('status') : '';
  const page = Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1);
  const link = (query) => `#/?${new URLSearchParams(query)}`;

  const filter = h('select', {
    id: 'status-filter',
    onchange: () => ctx.navigate(link(filter.value ? { status: filter.value } : {})),
  }, FILTERS.map((value) => h('option', { value, selected: value === status }, value || 'all')));
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const summary = h('p', { class: 'muted', id: 'list-summary' });

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Batches'),
      h('label', {}, 'Status ', filter),
      h('a', { class: 'button primary', href: '#/new' }, 'New batch')),
    summary,
    h('table', { class: 'batches', id: 'batches' },
      h('thead', {}, h('tr', {},
        ['Batch', 'Status', 'Progress', 'Failed', 'Records', 'Cost', 'Age'].map((name) =>
          h('th', { scope: 'col' }, name)))),
      rows),
    pager);

  const refresh = async () => {
    const answer = await ctx.api.json('GET', 'batches', {
      query: { page, limit: PAGE_SIZE, status },
    });
    if (ctx.closed) return;
    const { total, total_pages: pages } = answer.pagination;
    replace(summary, `${count(total)} batch${total === 1 ? '' : 'es'}${status ? ` ${status}` : ''}`);
    replace(rows, answer.batches.length
      ? answer.batches.map(batchRow)
      : h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'No batches yet.')));
    const query = status ? { status } : {};
    replace(pager,
      page > 1 ? h('a', { href: link({ ...query, page: page - 1 }), rel: 'prev' }, '‹ Newer') : null,
      h('span', {}, `Page ${page} of ${Math.max(pages, 1)}`),
      page < pages ? h('a', { href: link({ ...query, page: page + 1 }), rel: 'next' }, 'Older ›') : null);
  };
  await refresh();
  ctx.every(REFRESH_MS, refresh);
}

function batchRow(batch) {
  const counters = batch.counters;
  return h('tr', { dataset: { batchId: batch.batch_id } },
    h('td', {}, h('a', { href: `#/batches/${encodeURIComponent(batch.batch_id)}`, class: 'mono' },
      batch.batch_id)),
    h('td', {}, badge(batch.status)),
    h('td', { class: 'progress-cell' },
      progressBar(counters, batch.progress),
      h('span', { class: 'muted small' },
        `${count(batch.progress.done)} / ${count(batch.total)} · ${batch.progress.percent}%`)),
    h('td', { class: 'num' }, count(counters.failed)),
    h('td', { class: 'num' }, count(counters.records_extracted)),
    h('td', { class: 'num' }, usd(counters.cost_usd)),
    h('td', { title: batch.created_at }, age(batch.created_at)));
}

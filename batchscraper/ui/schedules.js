// The Schedules page: the caller's schedules, newest first, paginated, each with its cron line
// and zone, state, next run, last run (status, change counts, monitors) and its actions;
// refreshed while shown.

import { h, replace } from './dom.js';
import { count } from './format.js';
import {
  changeCounts, lastRun, monitorsSummary, nextRun, scheduleActions, scheduleHref, stateBadge,
  timingStacked,
} from './schedule-parts.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 5000;
const MINUTE_MS = 60_000;
const COLUMNS = ['Schedule', 'When', 'State', 'Next run', 'Last run', 'Changes', 'Monitors', ''];

export async function renderSchedules(view, ctx) {
  const page = Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1);
  const rows = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const summary = h('p', { class: 'muted', id: 'schedules-summary' });
  let drawn = '';

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Schedules'),
      h('span', { class: 'muted' }, 'Batches run again on a cron line. To add one, open a batch and use ',
        h('strong', {}, 'Schedule this batch'), '.')),
    summary,
    h('div', { class: 'scroll' }, h('table', { class: 'schedules', id: 'schedules' },
      h('thead', {}, h('tr', {}, COLUMNS.map((name) => h('th', { scope: 'col' }, name)))),
      rows)),
    pager);

  const refresh = async () => {
    const answer = await ctx.api.json('GET', 'schedules', { query: { page, limit: PAGE_SIZE } });
    if (ctx.closed) return;
    // the relative times ("in 5 h") move on each minute even when nothing else does
    const signature = JSON.stringify([answer, Math.floor(Date.now() / MINUTE_MS)]);
    if (signature === drawn) return; // unchanged: leave the rows (and a click on them) alone
    drawn = signature;
    const { total, total_pages: pages } = answer.pagination;
    replace(summary, `${count(total)} schedule${total === 1 ? '' : 's'}`);
    replace(rows, answer.schedules.length
      ? answer.schedules.map((schedule) => scheduleRow(ctx, schedule, after))
      : h('tr', {}, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No schedules yet.')));
    replace(pager, pageLinks(page, pages));
  };
  const after = {
    changed: refresh,
    deleted: async (notice) => {
      ctx.notify(notice);
      await refresh();
    },
  };

  await refresh();
  ctx.every(REFRESH_MS, refresh);
}

function scheduleRow(ctx, schedule, after) {
  const last = schedule.last_run;
  const { runs, skipped, missed, failed } = schedule.counters;
  return h('tr', { dataset: { scheduleId: schedule.schedule_id, enabled: String(schedule.enabled) } },
    h('td', {},
      schedule.name ? h('div', { class: 'batch-name' }, schedule.name) : null,
      h('a', { href: scheduleHref(schedule.schedule_id), class: 'mono small clip-id', title: schedule.schedule_id },
        schedule.schedule_id)),
    h('td', { dataset: { cell: 'timing' } }, timingStacked(schedule)),
    h('td', {}, h('div', { dataset: { cell: 'state' } }, stateBadge(schedule)),
      h('div', { class: 'muted small', dataset: { cell: 'runs' },
        title: `${skipped} skipped, ${missed} missed, ${failed} failed` },
      `${count(runs)} run${runs === 1 ? '' : 's'}`)),
    h('td', { dataset: { cell: 'next' } }, nextRun(schedule)),
    h('td', { dataset: { cell: 'last' } }, lastRun(schedule)),
    h('td', { dataset: { cell: 'changes' } }, changeCounts(last?.changes)),
    h('td', { dataset: { cell: 'monitors' } }, monitorsSummary(last?.monitors)),
    h('td', {}, scheduleActions(ctx, schedule, after)));
}

function pageLinks(page, pages) {
  const link = (n) => `#/schedules?${new URLSearchParams({ page: n })}`;
  return [
    page > 1 ? h('a', { href: link(page - 1), rel: 'prev' }, '‹ Newer') : null,
    h('span', {}, `Page ${page} of ${Math.max(pages, 1)}`),
    page < pages ? h('a', { href: link(page + 1), rel: 'next' }, 'Older ›') : null,
  ];
}

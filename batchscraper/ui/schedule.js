// One schedule: its settings and counters, what went wrong last, its actions, and its runs
// (newest first, each linking to its batch and the batch's Changes panel); refreshed while shown.

import { badge, field, h, progressBar, replace } from './dom.js';
import { age, count, zonedTime } from './format.js';
import {
  batchHref, changeCounts, changesHref, monitorsSummary, nextRun, scheduleActions, stateBadge,
  timing,
} from './schedule-parts.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 3000;
const MINUTE_MS = 60_000;
const RUN_COLUMNS = ['Batch', 'Made by', 'Status', 'Progress', 'Records', 'Changes', 'Monitors', 'Created'];

export async function renderSchedule(view, ctx) {
  const [scheduleId] = ctx.params;
  const path = `schedules/${scheduleId}`;
  const page = Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1);
  const header = h('div', { class: 'toolbar' });
  const actions = h('div', { class: 'actions', id: 'schedule-actions' });
  const problems = h('div', { id: 'schedule-problems' });
  const settings = settingsPanel();
  const runs = runsPanel(scheduleId, page);
  let drawn = '';
  replace(view, header, actions, problems, settings.element, runs.element);

  const refresh = async () => {
    const [schedule, answer] = await Promise.all([
      ctx.api.json('GET', path),
      ctx.api.json('GET', `${path}/runs`, { query: { page, limit: PAGE_SIZE } }),
    ]);
    if (ctx.closed) return;
    const signature = JSON.stringify([schedule, answer, Math.floor(Date.now() / MINUTE_MS)]);
    if (signature === drawn) return; // unchanged: leave the buttons (and a click) alone
    drawn = signature;
    replace(header, h('h1', {}, 'Schedule ', h('span', { class: 'mono', id: 'schedule-id' }, scheduleId)),
      stateBadge(schedule),
      schedule.name ? h('span', { class: 'batch-name', id: 'schedule-name' }, schedule.name) : null);
    replace(actions, scheduleActions(ctx, schedule, after));
    replace(problems, problemBanners(schedule));
    settings.draw(schedule);
    runs.draw(schedule, answer);
  };
  const after = { changed: refresh, deleted: (notice) => ctx.navigate('#/schedules', notice) };

  await refresh();
  ctx.every(REFRESH_MS, refresh);
}

// The tick that made no batch (its last_error), and the last tick skipped by overlap.
function problemBanners(schedule) {
  const { last_error: error, last_skip: skip } = schedule;
  return [
    error ? h('div', { class: 'banner banner-error', id: 'schedule-error' },
      h('strong', {}, error.code || 'ERROR'), ' ', error.message || '',
      error.tick ? ` (tick ${zonedTime(error.tick, schedule.timezone)})` : '') : null,
    skip ? h('p', { class: 'hint', id: 'schedule-skip' },
      `Tick ${zonedTime(skip.tick, schedule.timezone)} skipped: run `,
      h('a', { href: batchHref(skip.running), class: 'mono' }, skip.running), ' was still running.')
      : null,
  ];
}

function settingsPanel() {
  const element = h('section', { class: 'panel', id: 'schedule-settings' });
  return {
    element,
    draw(schedule) {
      const template = schedule.batch || {};
      const { runs, skipped, missed, failed } = schedule.counters;
      replace(element,
        h('dl', { class: 'grid wide' },
          field('Cron, time zone', timing(schedule)),
          field('Next run', nextRun(schedule)),
          field('Catch-up', schedule.catch_up),
          field('Overlap', schedule.overlap),
          field('Runs', count(runs)),
          field('Skipped / missed / failed', `${count(skipped)} / ${count(missed)} / ${count(failed)}`),
          field('Runs the batch', template.rerun_of
            ? h('a', { href: batchHref(template.rerun_of), class: 'mono' }, template.rerun_of)
            : `${count(template.urls?.length)} URL(s) of its own`),
          field('Monitors', template.monitors ? h('code', {}, JSON.stringify(template.monitors)) : null),
          field('Created', h('span', { title: schedule.created_at }, age(schedule.created_at)))));
    },
  };
}

function runsPanel(scheduleId, page) {
  const rows = h('tbody');
  const title = h('h2', {}, 'Runs');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of runs' });
  const element = h('section', { id: 'schedule-runs' }, title,
    h('table', { id: 'runs' },
      h('thead', {}, h('tr', {}, RUN_COLUMNS.map((name) => h('th', { scope: 'col' }, name)))), rows),
    pager);
  const link = (n) => `#/schedules/${scheduleId}?${new URLSearchParams({ page: n })}`;
  return {
    element,
    draw(schedule, answer) {
      const { total, total_pages: pages } = answer.pagination;
      replace(title, `Runs (${count(total)})`);
      replace(rows, answer.runs.length
        ? answer.runs.map((run) => runRow(schedule, run))
        : h('tr', {}, h('td', { colspan: RUN_COLUMNS.length, class: 'empty' }, 'No runs yet.')));
      replace(pager,
        page > 1 ? h('a', { href: link(page - 1), rel: 'prev' }, '‹ Newer') : null,
        h('span', {}, `Page ${page} of ${Math.max(pages, 1)}`),
        page < pages ? h('a', { href: link(page + 1), rel: 'next' }, 'Older ›') : null);
    },
  };
}

function runRow(schedule, run) {
  const made = run.schedule?.trigger === 'tick'
    ? `tick ${zonedTime(run.schedule.tick, schedule.timezone)}` : 'run now';
  return h('tr', { dataset: { batchId: run.batch_id } },
    h('td', {}, h('a', { href: batchHref(run.batch_id), class: 'mono' }, run.batch_id)),
    h('td', { dataset: { cell: 'trigger' } }, made),
    h('td', { dataset: { cell: 'status' } }, badge(run.status)),
    h('td', { class: 'progress-cell' }, progressBar(run.counters, run.progress),
      h('span', { class: 'muted small' }, `${count(run.progress.done)} / ${count(run.total)}`)),
    h('td', { class: 'num' }, count(run.counters.records_extracted)),
    h('td', { dataset: { cell: 'changes' } }, changeCounts(run.changes),
      run.compare_to ? [' ', h('a', { href: changesHref(run.batch_id), class: 'changes-link' }, 'Changes ›')]
        : null),
    h('td', { dataset: { cell: 'monitors' } }, monitorsSummary(run.monitors)),
    h('td', { title: run.created_at }, age(run.created_at)));
}

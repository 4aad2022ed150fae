// What the Schedules list and a schedule's page share: its state, next run and last run, a
// run's change counts and monitor results, and the actions on a schedule.

import { badge, h } from './dom.js';
import { age, count, until, zonedTime } from './format.js';

const CHANGES_SHOWN = ['changed', 'new', 'gone', 'unchanged'];

export const scheduleHref = (scheduleId) => `#/schedules/${scheduleId}`;
export const batchHref = (batchId) => `#/batches/${batchId}`;
// the batch's page opened at its Changes panel
export const changesHref = (batchId) => `#/batches/${batchId}?view=changes`;

export function stateBadge(schedule) {
  const state = schedule.enabled ? 'enabled' : 'paused';
  return h('span', { class: `badge badge-${state}`, dataset: { state } }, state);
}

// The cron line and the zone its hours are in.
export function timing(schedule) {
  return [h('code', { class: 'cron' }, schedule.cron), ' ',
    h('span', { class: 'muted zone' }, schedule.timezone)];
}

// The same on two lines, for a narrow table cell.
export function timingStacked(schedule) {
  return [h('code', { class: 'cron' }, schedule.cron), ' ',
    h('div', { class: 'muted small zone' }, schedule.timezone)];
}

// The next tick on the schedule's own wall clock (the cron's hours), and how far off it is.
export function nextRun(schedule) {
  if (!schedule.next_run_at) return h('span', { class: 'muted next-run' }, schedule.enabled ? '–' : 'paused');
  return h('div', { class: 'next-run', title: schedule.next_run_at, dataset: { at: schedule.next_run_at } },
    h('div', { class: 'when' }, zonedTime(schedule.next_run_at, schedule.timezone)),
    h('div', { class: 'muted small' }, until(schedule.next_run_at)));
}

// The last run: its batch's status (gone: deleted since), the batch, what made it, when.
export function lastRun(schedule) {
  const last = schedule.last_run;
  if (!last) return h('span', { class: 'muted' }, 'not run yet');
  return h('div', { class: 'last-run', dataset: { batchId: last.batch_id } },
    last.status ? badge(last.status) : h('span', { class: 'muted' }, 'deleted'), ' ',
    h('a', { href: batchHref(last.batch_id), class: 'mono small clip-id', title: last.batch_id },
      last.batch_id),
    h('div', { class: 'muted small', title: last.created_at },
      `${last.trigger === 'manual' ? 'run now' : 'tick'} · ${age(last.created_at)}`));
}

// Items per change status of a run that compared with the run before (none: '–').
export function changeCounts(changes) {
  if (!changes) return h('span', { class: 'muted' }, '–');
  return h('span', { class: 'changes' }, CHANGES_SHOWN.map((status) => {
    const n = changes[status] || 0;
    return h('span', { class: `change change-${status}${n ? '' : ' zero'}`, dataset: { change: status } },
      h('strong', {}, count(n)), ` ${status}`);
  }));
}

// Monitor results of a run: how many passed and failed (failed in red, named on hover).
export function monitorsSummary(results) {
  if (!results?.length) return h('span', { class: 'muted' }, '–');
  const failed = results.filter((result) => !result.ok);
  const ok = results.length - failed.length;
  return h('span', { class: 'monitors', dataset: { ok, failed: failed.length } },
    failed.length ? h('span', { class: 'monitors-failed', title: failed.map((r) => r.name).join(', ') },
      `${failed.length} failed`) : null,
    failed.length && ok ? ' · ' : null,
    ok ? h('span', { class: 'monitors-ok' }, `${ok} ok`) : null);
}

// Pause or resume, run now, delete. `after.changed()` reads the schedule again;
// `after.deleted(notice)` leaves it, telling the user `notice`.
export function scheduleActions(ctx, schedule, after) {
  const path = `schedules/${schedule.schedule_id}`;
  const label = schedule.name ? `“${schedule.name}”` : schedule.schedule_id;
  const act = (button, work) => button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      ctx.fail(error);
    } finally {
      button.disabled = false;
    }
  });
  const toggle = h('button', { type: 'button', dataset: { action: schedule.enabled ? 'pause' : 'resume' } },
    schedule.enabled ? 'Pause' : 'Resume');
  const run = h('button', { type: 'button', dataset: { action: 'run' } }, 'Run now');
  const remove = h('button', { type: 'button', class: 'danger', dataset: { action: 'delete' } }, 'Delete');
  act(toggle, async () => {
    await ctx.api.json('PATCH', path, { body: { enabled: !schedule.enabled } });
    ctx.notify(`Schedule ${label} ${schedule.enabled ? 'paused' : 'resumed'}.`);
    await after.changed();
  });
  act(run, async () => {
    const answer = await ctx.api.json('POST', `${path}/run`);
    ctx.notify(`Schedule ${label}: run ${answer.batch_id} started (${count(answer.total)} URL(s)).`);
    await after.changed();
  });
  act(remove, async () => {
    if (!(await ctx.confirm(`Delete schedule ${label}? The batches it made stay.`))) return;
    await ctx.api.json('DELETE', path);
    await after.deleted(`Schedule ${label} deleted; the batches it made stay.`);
  });
  return h('div', { class: 'row-actions' }, toggle, run, remove);
}

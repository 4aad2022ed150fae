// One batch: its page of panels (an Overview tab and a Records tab), the address that keeps
// its tab and filters, and the poll feeding them.

import { actionsPanel } from './batch-actions.js';
import { changesPanel, monitorsPanel } from './batch-changes.js';
import { chartPanel } from './batch-chart.js';
import { itemsPanel } from './batch-items.js';
import {
  codesPanel, domainsPanel, inputsPanel, jobsPanel, progressPanel, webhookPanel,
} from './batch-panels.js';
import { recordsPanel } from './batch-records.js';
import { templatesPanel } from './batch-templates.js';
import { badge, h, replace } from './dom.js';
import { FINAL_STATUSES, Pace } from './format.js';
import { scheduleFormPanel } from './schedule-form.js';

const POLL_MS = 1500;
const IDLE_POLL_MS = 10_000; // a finished batch changes only when someone retries it
const TIMELINE_EVERY_MS = 10_000; // the chart's data comes with a poll this often
const TABS = ['overview', 'records'];

export async function renderBatch(view, ctx) {
  const [batchId] = ctx.params;
  const path = `batches/${batchId}`;
  const state = {
    batch: null, refreshedAt: 0, timelineAt: 0, drawn: '', pace: new Pace(),
    tab: TABS.includes(ctx.query.get('tab')) ? ctx.query.get('tab') : 'overview',
  };
  // the inputs never change: read once, with the smallest page of items
  const detail = await ctx.api.json('GET', path, { query: { limit: 1, fields: 'index' } });
  if (ctx.closed) return;

  // A poll reads the batch's state only (limit=0: a few hundred bytes; the chart's timeline
  // every TIMELINE_EVERY_MS); when it moved, the panels are drawn again and the shown tab's
  // table takes the items that changed.
  const refresh = async ({ forceScan = false } = {}) => {
    const withTimeline = Date.now() - state.timelineAt >= TIMELINE_EVERY_MS;
    const query = { limit: 0, include: withTimeline ? 'timeline' : '' };
    const batch = await ctx.api.json('GET', path, { query });
    if (ctx.closed) return;
    if (batch.timeline) state.timelineAt = Date.now();
    state.batch = batch;
    state.refreshedAt = Date.now();
    state.pace.add(batch.progress.done);
    codes.poll(batch);
    domains.poll(batch, forceScan);
    chart.draw(batch.timeline, batch.failures);
    const signature = JSON.stringify({ ...batch, timeline: undefined });
    if (signature === state.drawn) return; // nothing new: leave the tables (and a click) alone
    state.drawn = signature;
    draw();
    await (state.tab === 'records' ? records.sync() : items.sync());
  };

  const status = h('span');
  const error = h('div', { class: 'banner banner-error', hidden: true, id: 'batch-error' });
  const address = () => {
    const query = items.address();
    if (state.tab !== 'overview') query.set('tab', state.tab);
    syncAddress(batchId, query);
  };
  const items = itemsPanel(ctx, path, ctx.query, address);
  const columns = detail.overview?.fields || fieldPaths(detail.schema);
  const records = recordsPanel(ctx, path, columns);
  const codes = codesPanel(ctx, path, (code) => items.setFilters('failed', code));
  const domains = domainsPanel(ctx, path);
  const progress = progressPanel();
  const chart = chartPanel();
  const scheduleForm = scheduleFormPanel(ctx, detail);
  const actions = actionsPanel(ctx, batchId, {
    refresh: () => refresh({ forceScan: true }),
    restartPace: () => { state.pace = new Pace(); },
  }, columns, scheduleForm);
  const webhook = webhookPanel();
  const jobs = jobsPanel();
  const inputs = inputsPanel();
  const monitors = monitorsPanel();
  // ?view=changes (a schedule's run links so): the page opens at the Changes panel
  const changes = changesPanel(ctx, path, { focus: ctx.query.get('view') === 'changes' });
  const templates = templatesPanel(ctx, batchId);
  const panes = {
    overview: h('div', { id: 'tab-overview' },
      monitors.element, changes.element, codes.element, templates.element, domains.element,
      items.element,
      webhook.element, jobs.element, inputs.element),
    records: h('div', { id: 'tab-records' }, records.element),
  };
  const tabButtons = TABS.map((tab) => h('button', {
    type: 'button', role: 'tab', id: `tab-button-${tab}`,
    onclick: () => showTab(tab).catch((failure) => ctx.fail(failure)),
  }, tab === 'overview' ? 'Overview' : 'Records'));
  const showTab = async (tab) => {
    state.tab = tab;
    TABS.forEach((name, n) => {
      tabButtons[n].setAttribute('aria-selected', String(name === tab));
      panes[name].hidden = name !== tab;
    });
    address();
    await (tab === 'records' ? records.load() : items.load());
  };

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Batch ', h('span', { class: 'mono', id: 'batch-id' }, batchId)), status,
      labels(detail)),
    actions.element,
    scheduleForm.element,
    error,
    progress.element,
    chart.element,
    h('div', { class: 'tabs', role: 'tablist' }, tabButtons),
    panes.overview, panes.records);

  const draw = () => {
    const { batch } = state;
    replace(status, badge(batch.status));
    error.hidden = !batch.error;
    if (batch.error) {
      replace(error, h('strong', {}, batch.error.code || 'ERROR'), ' ', batch.error.message || '');
    }
    progress.draw(batch, state.pace);
    actions.draw(batch);
    items.drawCodeFilter(codes.counts());
    codes.draw();
    domains.draw();
    webhook.draw(batch.webhook);
    jobs.draw(batch.jobs || []);
    monitors.draw(batch.monitors);
    changes.draw(batch);
    templates.draw(batch);
  };

  inputs.draw(detail);
  await showTab(state.tab);
  await refresh({ forceScan: true });
  ctx.every(POLL_MS, async () => {
    const final = FINAL_STATUSES.includes(state.batch.status);
    if (final && Date.now() - state.refreshedAt < IDLE_POLL_MS) return;
    await refresh();
  });
}

function labels(batch) {
  return [
    batch.name ? h('span', { class: 'batch-name', id: 'batch-name' }, batch.name) : null,
    batch.tags?.length
      ? h('span', { class: 'tags', id: 'batch-tags' }, batch.tags.map((tag) => h('span', { class: 'tag' }, tag)))
      : null,
  ];
}

// The schema's fields as a.b paths (batches stored before the overview existed).
function fieldPaths(schema, prefix = '') {
  const node = schema?.type === 'array' ? schema.items : schema;
  return Object.entries(node?.properties || {}).flatMap(([name, sub]) => (
    sub?.properties && (sub.type ?? 'object') === 'object'
      ? fieldPaths(sub, `${prefix}${name}.`)
      : [prefix + name]));
}

function syncAddress(batchId, query) {
  const hash = `#/batches/${batchId}${query.size ? `?${query}` : ''}`;
  history.replaceState(null, '', hash); // no hashchange: the view stays, with its pace
}

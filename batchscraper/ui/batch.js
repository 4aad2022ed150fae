// One batch: its page of panels, the address that keeps its filters, and the poll feeding them.

import { actionsPanel } from './batch-actions.js';
import { itemsPanel } from './batch-items.js';
import {
  codesPanel, domainsPanel, inputsPanel, jobsPanel, progressPanel, webhookPanel,
} from './batch-panels.js';
import { badge, h, replace } from './dom.js';
import { FINAL_STATUSES, Pace } from './format.js';

const POLL_MS = 1500;
const IDLE_POLL_MS = 10_000; // a finished batch changes only when someone retries it

export async function renderBatch(view, ctx) {
  const [batchId] = ctx.params;
  const path = `batches/${batchId}`;
  const state = { batch: null, refreshedAt: 0, drawn: '', pace: new Pace() };

  // A poll reads the batch's state only (limit=0: a few hundred bytes); when it moved, the
  // panels are drawn again and the items table takes the items that changed.
  const refresh = async ({ forceScan = false } = {}) => {
    const batch = await ctx.api.json('GET', path, { query: { limit: 0 } });
    if (ctx.closed) return;
    state.batch = batch;
    state.refreshedAt = Date.now();
    state.pace.add(batch.progress.done);
    codes.poll(batch);
    domains.poll(batch, forceScan);
    const signature = JSON.stringify(batch);
    if (signature === state.drawn) return; // nothing new: leave the table (and a click) alone
    state.drawn = signature;
    draw();
    await items.sync();
  };

  const status = h('span');
  const error = h('div', { class: 'banner banner-error', hidden: true, id: 'batch-error' });
  const items = itemsPanel(ctx, path, ctx.query, () => syncAddress(batchId, items.address()));
  const codes = codesPanel(ctx, path, (code) => items.setFilters('failed', code));
  const domains = domainsPanel(ctx, path);
  const progress = progressPanel();
  const actions = actionsPanel(ctx, batchId, {
    refresh: () => refresh({ forceScan: true }),
    restartPace: () => { state.pace = new Pace(); },
  });
  const webhook = webhookPanel();
  const jobs = jobsPanel();
  const inputs = inputsPanel();

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Batch ', h('span', { class: 'mono', id: 'batch-id' }, batchId)), status),
    actions.element,
    error,
    progress.element,
    codes.element,
    domains.element,
    items.element,
    webhook.element, jobs.element, inputs.element);

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
  };

  // the inputs never change: read once, with the smallest page of items
  inputs.draw(await ctx.api.json('GET', path, { query: { limit: 1, fields: 'index' } }));
  await items.load();
  await refresh({ forceScan: true });
  ctx.every(POLL_MS, async () => {
    const final = FINAL_STATUSES.includes(state.batch.status);
    if (final && Date.now() - state.refreshedAt < IDLE_POLL_MS) return;
    await refresh();
  });
}

function syncAddress(batchId, query) {
  const hash = `#/batches/${batchId}${query.size ? `?${query}` : ''}`;
  history.replaceState(null, '', hash); // no hashchange: the view stays, with its pace
}

// One batch: live counters and progress, timing, domains, webhook, items with filters, actions.

import { badge, field, h, progressBar, replace } from './dom.js';
import { drawDomains } from './domains.js';
import { exportRecords } from './export.js';
import { FINAL_STATUSES, Pace, count, dateTime, duration, json, tokens, usd } from './format.js';
import { openItem } from './item.js';

const POLL_MS = 1500;
const IDLE_POLL_MS = 10_000; // a finished batch changes only when someone retries it
const SCAN_EVERY_MS = 5000;
const LIVE_SCAN_LIMIT = 1000;
const EXAMPLE_EVERY_MS = 5000;
const ERROR_CODE = /^[A-Z][A-Z0-9_]{0,63}$/; // what the API's error_code filter takes
const PAGE_SIZE = 50;
const BATCH_ID = /^b_[0-9a-f]{32}$/;
const ITEM_FILTERS = ['', 'pending', 'running', 'completed', 'failed', 'cancelled'];

export async function renderBatch(view, ctx) {
  const [batchId] = ctx.params;
  const path = `batches/${batchId}`;
  const state = {
    status: ITEM_FILTERS.includes(ctx.query.get('status')) ? ctx.query.get('status') : '',
    // a code the API would refuse (400 on every poll) is dropped
    code: /^[A-Z][A-Z0-9_]{0,63}$/.test(ctx.query.get('code') || '') ? ctx.query.get('code') : '',
    page: Math.max(1, Number.parseInt(ctx.query.get('page'), 10) || 1),
    batch: null,
    items: [],
    itemsTotal: 0,
    examples: new Map(), // error code -> { count, at, message }: an example per code
    fetching: new Set(), // the codes whose example is being fetched
    failedItems: null, // the failed items' records, for the Domains panel; null: not yet read
    scannedFailed: 0,
    scannedAt: 0,
    scan: null, // the scan under way
    rescan: false,
    refreshedAt: 0,
    drawn: '',
    pace: new Pace(),
  };
  if (state.code) state.status = 'failed';

  const el = {
    badge: h('span'),
    error: h('div', { class: 'banner banner-error', hidden: true, id: 'batch-error' }),
    bar: h('div', { class: 'progress-wide' }),
    progressText: h('p', { id: 'progress-text', class: 'progress-text' }),
    counters: h('dl', { class: 'grid', id: 'counters' }),
    timing: h('dl', { class: 'grid', id: 'timing' }),
    codes: h('section', { id: 'error-codes', hidden: true }),
    domains: h('section', { id: 'domains', hidden: true }),
    webhook: h('section', { id: 'webhook', hidden: true }),
    jobs: h('section', { id: 'jobs' }),
    inputs: h('section', { id: 'inputs' }),
    statusFilter: h('select', { id: 'item-status-filter' },
      ITEM_FILTERS.map((value) => h('option', { value }, value || 'all'))),
    codeFilter: h('select', { id: 'item-code-filter' }),
    rows: h('tbody'),
    pager: h('nav', { class: 'pager', 'aria-label': 'Item pages' }),
    itemsSummary: h('span', { class: 'muted', id: 'items-summary' }),
    cancel: h('button', { type: 'button', id: 'cancel-batch', class: 'danger' }, 'Cancel batch'),
    retry: h('button', { type: 'button', id: 'retry-failed' }, 'Retry failed'),
    onlyRetryable: h('input', { type: 'checkbox', id: 'only-retryable' }),
    exportJsonl: h('button', { type: 'button', id: 'export-jsonl' }, 'Export JSONL'),
    exportCsv: h('button', { type: 'button', id: 'export-csv' }, 'Export CSV'),
  };
  el.statusFilter.value = state.status;

  replace(view,
    h('div', { class: 'toolbar' },
      h('h1', {}, 'Batch ', h('span', { class: 'mono', id: 'batch-id' }, batchId)), el.badge),
    h('div', { class: 'actions' },
      el.cancel, el.retry,
      h('label', { class: 'inline' }, el.onlyRetryable, ' only retryable errors'),
      h('span', { class: 'spacer' }), el.exportJsonl, el.exportCsv),
    el.error,
    h('section', { class: 'panel' }, el.bar, el.progressText, el.counters, el.timing),
    el.codes,
    el.domains,
    h('section', { class: 'items' },
      h('div', { class: 'toolbar' },
        h('h2', {}, 'Items'),
        h('label', {}, 'Status ', el.statusFilter),
        h('label', {}, 'Error code ', el.codeFilter),
        el.itemsSummary),
      h('table', { id: 'items' },
        h('thead', {}, h('tr', {},
          ['#', 'URL', 'Status', 'Render', 'HTTP', 'Error', 'Message', 'Duration', 'Tokens']
            .map((name) => h('th', { scope: 'col' }, name)))),
        el.rows),
      el.pager),
    el.webhook, el.jobs, el.inputs);

  const syncAddress = () => {
    const query = new URLSearchParams();
    if (state.status) query.set('status', state.status);
    if (state.code) query.set('code', state.code);
    if (state.page > 1) query.set('page', state.page);
    const hash = `#/batches/${batchId}${query.size ? `?${query}` : ''}`;
    history.replaceState(null, '', hash); // no hashchange: the view stays, with its pace
  };

  // The failed items per error code come with the batch (`failures`, exact, on every poll).
  // Each code's example message is its first failed item, one item fetched when the code's
  // count changed (then at most every EXAMPLE_EVERY_MS, at once when it fell or is new).
  const fetchExamples = () => {
    const failures = state.batch.failures || {};
    for (const code of state.examples.keys()) {
      if (!failures[code]) state.examples.delete(code);
    }
    const now = Date.now();
    for (const [code, n] of Object.entries(failures)) {
      const known = state.examples.get(code);
      if (!ERROR_CODE.test(code) || state.fetching.has(code)) continue;
      if (known && (known.count === n || (n > known.count && now - known.at < EXAMPLE_EVERY_MS))) {
        continue;
      }
      state.fetching.add(code);
      ctx.api.json('GET', `${path}/items`, { query: { status: 'failed', error_code: code, limit: 1 } })
        .then((answer) => {
          if (ctx.closed) return;
          const message = answer.items[0]?.error?.message || '';
          state.examples.set(code, { count: n, at: Date.now(), message });
          drawCodes();
        })
        .catch((error) => ctx.fail(error)) // not cached: the next poll asks again
        .finally(() => state.fetching.delete(code));
    }
  };

  // The failed items' records, for the Domains panel's failed items per host (the API counts
  // them per code, not per host). Read in the background when the failed count moved, at most
  // every SCAN_EVERY_MS, and for big batches only once they finish (or when forced).
  const scanFailures = (force) => {
    const batch = state.batch;
    const { failed } = batch.counters;
    if (!batch.domains?.length) return; // no panel to fill
    if (state.scan) {
      state.rescan ||= force;
      return;
    }
    const final = FINAL_STATUSES.includes(batch.status);
    const first = state.failedItems === null;
    if (!force && !first && failed === state.scannedFailed) return;
    if (!force && !first && !final
        && (Date.now() - state.scannedAt < SCAN_EVERY_MS || failed > LIVE_SCAN_LIMIT)) return;
    if (!failed) {
      state.failedItems = [];
      state.scannedFailed = 0;
      return;
    }
    state.scannedAt = Date.now();
    state.scan = (async () => {
      const found = [];
      for await (const record of ctx.api.records(`${path}/items`, { status: 'failed' })) {
        if (ctx.closed) return;
        found.push(record);
      }
      state.failedItems = found;
      state.scannedFailed = failed;
      drawDomainsPanel();
    })()
      .catch((error) => ctx.fail(error))
      .finally(() => {
        state.scan = null;
        if (state.rescan && !ctx.closed) {
          state.rescan = false;
          scanFailures(true);
        }
      });
  };

  const refresh = async ({ forceScan = false } = {}) => {
    const query = {
      page: state.page, limit: PAGE_SIZE, status: state.status, error_code: state.code,
    };
    const batch = await ctx.api.json('GET', path, { query });
    if (ctx.closed) return;
    state.batch = batch;
    state.refreshedAt = Date.now();
    state.pace.add(batch.progress.done);
    fetchExamples();
    scanFailures(forceScan);
    const signature = JSON.stringify([batch, state.status, state.code, state.page]);
    if (signature === state.drawn) return; // nothing new: leave the table (and a click) alone
    state.drawn = signature;
    state.items = batch.items;
    state.itemsTotal = batch.items_pagination.total;
    draw();
  };

  const draw = () => {
    const batch = state.batch;
    const counters = batch.counters;
    const final = FINAL_STATUSES.includes(batch.status);
    replace(el.badge, badge(batch.status));
    el.error.hidden = !batch.error;
    if (batch.error) {
      replace(el.error, h('strong', {}, batch.error.code || 'ERROR'), ' ', batch.error.message || '');
    }
    replace(el.bar, progressBar(counters, batch.progress));
    el.progressText.dataset.done = batch.progress.done;
    el.progressText.dataset.total = batch.progress.total;
    replace(el.progressText,
      `${count(batch.progress.done)} of ${count(batch.progress.total)} finished (${batch.progress.percent}%)`);
    replace(el.counters,
      ['pending', 'running', 'completed', 'failed', 'cancelled'].map((name) =>
        field(name, h('span', { class: `count count-${name}`, dataset: { counter: name } },
          count(counters[name])))),
      field('records', count(counters.records_extracted)),
      field('filtered out', count(counters.records_filtered)),
      field('LLM calls', count(counters.llm_calls)),
      field('tokens', `${count(counters.tokens_in)} in / ${count(counters.tokens_out)} out`),
      field('cost', usd(counters.cost_usd)));
    const started = batch.started_at ? new Date(batch.started_at).getTime() : null;
    const end = batch.finished_at ? new Date(batch.finished_at).getTime() : Date.now();
    const rate = state.pace.perMinute(batch);
    replace(el.timing,
      field('created', dateTime(batch.created_at)),
      field('started', dateTime(batch.started_at)),
      field('finished', dateTime(batch.finished_at)),
      field('elapsed', started ? duration(end - started, true) : '–'),
      field('pages / min', rate === null ? '–' : rate.toFixed(1)),
      field('ETA', final ? '–' : duration(state.pace.eta(batch), true)));
    el.cancel.disabled = final;
    el.retry.disabled = !final || !counters.failed;
    drawCodeFilter();
    drawCodes();
    drawDomainsPanel();
    drawItems();
    drawWebhook(el.webhook, batch.webhook);
    drawJobs(el.jobs, batch.jobs || []);
    if (!el.inputs.childElementCount) drawInputs(el.inputs, batch);
  };

  // The failed items per error code, most first.
  const codeCounts = () => Object.entries(state.batch.failures || {})
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));

  const drawCodeFilter = () => {
    const known = new Set(codeCounts().map(([code]) => code));
    if (state.code) known.add(state.code);
    replace(el.codeFilter,
      h('option', { value: '' }, 'any'),
      [...known].sort().map((code) => h('option', { value: code }, code)));
    el.codeFilter.value = state.code;
  };

  const drawCodes = () => {
    const counts = codeCounts();
    el.codes.hidden = !counts.length;
    replace(el.codes,
      h('h2', {}, 'Why items failed'),
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Error code'), h('th', {}, 'Items'), h('th', {}, 'Example'))),
        h('tbody', {}, counts.map(([code, n]) => {
          const message = state.examples.get(code)?.message || '';
          return h('tr', { dataset: { code } },
            h('td', {}, h('button', {
              type: 'button', class: 'link', dataset: { code },
              onclick: () => setFilters('failed', code),
            }, code)),
            h('td', { class: 'num' }, count(n)),
            h('td', { class: 'clip', title: message }, message));
        }))));
  };

  const drawDomainsPanel = () => {
    drawDomains(el.domains, state.batch.domains || [], state.failedItems, state.batch.counters.failed);
  };

  const drawItems = () => {
    const pages = Math.max(1, Math.ceil(state.itemsTotal / PAGE_SIZE));
    const pageButton = (page, label) =>
      h('button', { type: 'button', class: 'link', onclick: () => goPage(page) }, label);
    replace(el.itemsSummary, `${count(state.itemsTotal)} item${state.itemsTotal === 1 ? '' : 's'}`);
    replace(el.rows, state.items.length
      ? state.items.map((item) => itemRow(item, () => openItem(item, ctx, path)))
      : h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No items match.')));
    replace(el.pager,
      state.page > 1 ? pageButton(state.page - 1, '‹ Previous') : null,
      h('span', {}, `Page ${state.page} of ${pages}`),
      state.page < pages ? pageButton(state.page + 1, 'Next ›') : null);
  };

  const goPage = (page) => {
    state.page = page;
    syncAddress();
    refresh().catch((error) => ctx.fail(error));
  };

  const setFilters = (status, code) => {
    state.status = code ? 'failed' : status;
    state.code = state.status === 'failed' ? code : '';
    state.page = 1;
    el.statusFilter.value = state.status;
    syncAddress();
    refresh().catch((error) => ctx.fail(error));
  };

  el.statusFilter.addEventListener('change', () => setFilters(el.statusFilter.value, ''));
  el.codeFilter.addEventListener('change', () => setFilters(state.status, el.codeFilter.value));

  el.cancel.addEventListener('click', async () => {
    if (!(await ctx.confirm(`Cancel batch ${batchId}? Unfinished items become cancelled.`))) return;
    el.cancel.disabled = true;
    try {
      const answer = await ctx.api.json('DELETE', path);
      ctx.notify(`Batch cancelled: ${answer.counters.cancelled} item(s) cancelled.`);
      await refresh({ forceScan: true });
    } catch (error) {
      ctx.fail(error);
      el.cancel.disabled = false;
    }
  });

  el.retry.addEventListener('click', async () => {
    el.retry.disabled = true;
    try {
      const answer = await ctx.api.json('POST', `${path}/retry`, {
        body: { only_retryable: el.onlyRetryable.checked },
      });
      ctx.notify(`${answer.retried} failed item(s) queued again.`);
      state.pace = new Pace();
      await refresh({ forceScan: true });
    } catch (error) {
      ctx.fail(error);
      el.retry.disabled = false;
    }
  });

  for (const [button, format] of [[el.exportJsonl, 'jsonl'], [el.exportCsv, 'csv']]) {
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const written = await exportRecords(ctx.api, batchId, format);
        ctx.notify(`Exported ${written} record(s) as ${format.toUpperCase()}.`);
      } catch (error) {
        ctx.fail(error);
      } finally {
        button.disabled = false;
      }
    });
  }

  await refresh({ forceScan: true });
  ctx.every(POLL_MS, async () => {
    const final = FINAL_STATUSES.includes(state.batch.status);
    if (final && Date.now() - state.refreshedAt < IDLE_POLL_MS) return;
    await refresh();
  });
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

function drawWebhook(section, webhook) {
  section.hidden = !webhook;
  if (!webhook) return;
  const deliveries = webhook.deliveries || [];
  replace(section,
    h('h2', {}, 'Webhook'),
    h('dl', { class: 'grid' },
      field('URL', webhook.url),
      field('status', webhook.status || 'not sent yet'),
      field('attempts', count(deliveries.length))),
    deliveries.length
      ? h('table', { class: 'compact', id: 'deliveries' },
        h('thead', {}, h('tr', {}, ['Attempt', 'At', 'HTTP', 'Result', 'Duration', 'Error']
          .map((name) => h('th', {}, name)))),
        h('tbody', {}, deliveries.map((attempt) => h('tr', {},
          h('td', { class: 'num' }, attempt.attempt),
          h('td', {}, dateTime(attempt.at)),
          h('td', { class: 'num' }, attempt.status_code ?? '–'),
          h('td', {}, attempt.ok ? 'delivered' : 'failed'),
          h('td', { class: 'num' }, duration(attempt.duration_ms)),
          h('td', { class: 'clip' }, attempt.error || '')))))
      : null);
}

function drawJobs(section, jobs) {
  replace(section,
    h('h2', {}, 'Scrapyd jobs'),
    jobs.length
      ? h('ul', { class: 'plain' }, jobs.map((job) => h('li', {},
        h('span', { class: 'mono' }, job.id), ` ${job.kind}, scheduled ${dateTime(job.scheduled_at)}`,
        job.active ? ' (running)' : '')))
      : h('p', { class: 'muted' }, 'None (run from the command line).'));
}

function drawInputs(section, batch) {
  replace(section,
    h('h2', {}, 'Inputs'),
    h('details', {}, h('summary', {}, 'Schema'), h('pre', { class: 'json' }, json(batch.schema))),
    h('details', {}, h('summary', {}, 'Options'), h('pre', { class: 'json' }, json(batch.options))),
    batch.prompt ? h('details', {}, h('summary', {}, 'Prompt'), h('pre', {}, batch.prompt)) : null,
    BATCH_ID.test(batch.rerun_of || '')
      ? h('p', {}, 'Re-run of ', h('a', { href: `#/batches/${batch.rerun_of}` }, batch.rerun_of))
      : null);
}

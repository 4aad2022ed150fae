// The panels of a batch's page besides its items and actions: progress and timing, why items
// failed, domains, webhook, Scrapyd jobs, inputs. Each is `{ element, draw(...) }`.

import { ERROR_CODE } from './batch-items.js';
import { field, h, progressBar, replace } from './dom.js';
import { drawDomains } from './domains.js';
import { FINAL_STATUSES, count, dateTime, duration, json, usd } from './format.js';

const SCAN_EVERY_MS = 5000;
const LIVE_SCAN_LIMIT = 1000;
const EXAMPLE_EVERY_MS = 5000;
const BATCH_ID = /^b_[0-9a-f]{32}$/;
const SCHEDULE_ID = /^s_[0-9a-f]{32}$/;
// leased: held by a worker, its request still queued there; running: in flight
const COUNTERS = ['pending', 'leased', 'running', 'completed', 'failed', 'cancelled'];

// The bar, "n of m finished", the counters and the timing (pages/min from `pace`).
export function progressPanel() {
  const bar = h('div', { class: 'progress-wide' });
  const text = h('p', { id: 'progress-text', class: 'progress-text' });
  const counters = h('dl', { class: 'grid', id: 'counters' });
  const timing = h('dl', { class: 'grid', id: 'timing' });
  return {
    element: h('section', { class: 'panel' }, bar, text, counters, timing),
    draw(batch, pace) {
      const c = batch.counters;
      const final = FINAL_STATUSES.includes(batch.status);
      replace(bar, progressBar(c, batch.progress));
      text.dataset.done = batch.progress.done;
      text.dataset.total = batch.progress.total;
      replace(text,
        `${count(batch.progress.done)} of ${count(batch.progress.total)} finished (${batch.progress.percent}%)`);
      replace(counters,
        COUNTERS.map((name) =>
          field(name, h('span', { class: `count count-${name}`, dataset: { counter: name } },
            count(c[name])))),
        field('records', count(c.records_extracted)),
        field('filtered out', count(c.records_filtered)),
        field('LLM calls', count(c.llm_calls)),
        field('tokens', `${count(c.tokens_in)} in / ${count(c.tokens_out)} out`),
        field('cost', usd(c.cost_usd)));
      const started = batch.started_at ? new Date(batch.started_at).getTime() : null;
      const end = batch.finished_at ? new Date(batch.finished_at).getTime() : Date.now();
      const rate = pace.perMinute(batch);
      replace(timing,
        field('created', dateTime(batch.created_at)),
        field('started', dateTime(batch.started_at)),
        field('finished', dateTime(batch.finished_at)),
        field('elapsed', started ? duration(end - started, true) : '–'),
        field('pages / min', rate === null ? '–' : rate.toFixed(1)),
        field('ETA', final ? '–' : duration(pace.eta(batch), true)));
    },
  };
}

// "Why items failed": the failed items per error code (`failures`, exact, on every poll), most
// first. Each code's example message is its first failed item, one item fetched when the code's
// count changed (then at most every EXAMPLE_EVERY_MS, at once when it fell or is new).
// `pick(code)` filters the items by a code.
export function codesPanel(ctx, path, pick) {
  const element = h('section', { id: 'error-codes', hidden: true });
  const examples = new Map(); // error code -> { count, at, message }
  const fetching = new Set(); // the codes whose example is being fetched
  let failures = {};

  const counts = () => Object.entries(failures)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));

  let drawn = '';
  const draw = () => {
    const rows = counts();
    const signature = JSON.stringify(
      rows.map(([code, n]) => [code, n, examples.get(code)?.message]));
    if (signature === drawn) return; // nothing new: leave the buttons (and a click) alone
    drawn = signature;
    element.hidden = !rows.length;
    replace(element,
      h('h2', {}, 'Why items failed'),
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Error code'), h('th', {}, 'Items'), h('th', {}, 'Example'))),
        h('tbody', {}, rows.map(([code, n]) => {
          const message = examples.get(code)?.message || '';
          return h('tr', { dataset: { code } },
            h('td', {}, h('button', {
              type: 'button', class: 'link', dataset: { code }, onclick: () => pick(code),
            }, code)),
            h('td', { class: 'num' }, count(n)),
            h('td', { class: 'clip', title: message }, message));
        }))));
  };

  const poll = (batch) => {
    failures = batch.failures || {};
    for (const code of examples.keys()) {
      if (!failures[code]) examples.delete(code);
    }
    const now = Date.now();
    for (const [code, n] of Object.entries(failures)) {
      const known = examples.get(code);
      if (!ERROR_CODE.test(code) || fetching.has(code)) continue;
      if (known && (known.count === n || (n > known.count && now - known.at < EXAMPLE_EVERY_MS))) {
        continue;
      }
      fetching.add(code);
      ctx.api.json('GET', `${path}/items`, { query: { status: 'failed', error_code: code, limit: 1 } })
        .then((answer) => {
          if (ctx.closed) return;
          const message = answer.items[0]?.error?.message || '';
          examples.set(code, { count: n, at: Date.now(), message });
          draw();
        })
        .catch((error) => ctx.fail(error)) // not cached: the next poll asks again
        .finally(() => fetching.delete(code));
    }
  };

  return { element, counts, draw, poll };
}

// The Domains panel, with the failed items per host: the API counts them per code, not per
// host, so the failed items' records are read in the background when the failed count moved,
// at most every SCAN_EVERY_MS, and for big batches only once they finish (or when forced).
export function domainsPanel(ctx, path) {
  const element = h('section', { id: 'domains', hidden: true });
  const state = {
    batch: null,
    failedItems: null, // the failed items' records; null: not read yet
    scannedFailed: 0,
    scannedAt: 0,
    scan: null, // the scan under way
    rescan: false,
  };

  const draw = () => {
    drawDomains(element, state.batch.domains || [], state.failedItems, state.batch.counters.failed);
  };

  const scan = (force) => {
    const { batch } = state;
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
      draw();
    })()
      .catch((error) => ctx.fail(error))
      .finally(() => {
        state.scan = null;
        if (state.rescan && !ctx.closed) {
          state.rescan = false;
          scan(true);
        }
      });
  };

  return {
    element,
    draw,
    poll(batch, force) {
      state.batch = batch;
      scan(force);
    },
  };
}

export function webhookPanel() {
  const section = h('section', { id: 'webhook', hidden: true });
  return {
    element: section,
    draw(webhook) {
      section.hidden = !webhook;
      if (!webhook) return;
      const deliveries = webhook.deliveries || [];
      replace(section,
        h('h2', {}, 'Webhook'),
        h('dl', { class: 'grid' },
          field('URL', webhook.url),
          field('status', webhook.status || 'not sent yet'),
          field('attempts', count(deliveries.length))),
        deliveries.length ? deliveriesTable(deliveries) : null);
    },
  };
}

function deliveriesTable(deliveries) {
  return h('table', { class: 'compact', id: 'deliveries' },
    h('thead', {}, h('tr', {}, ['Attempt', 'At', 'HTTP', 'Result', 'Duration', 'Error']
      .map((name) => h('th', {}, name)))),
    h('tbody', {}, deliveries.map((attempt) => h('tr', {},
      h('td', { class: 'num' }, attempt.attempt),
      h('td', {}, dateTime(attempt.at)),
      h('td', { class: 'num' }, attempt.status_code ?? '–'),
      h('td', {}, attempt.ok ? 'delivered' : 'failed'),
      h('td', { class: 'num' }, duration(attempt.duration_ms)),
      h('td', { class: 'clip' }, attempt.error || '')))));
}

export function jobsPanel() {
  const section = h('section', { id: 'jobs' });
  return {
    element: section,
    draw(jobs) {
      replace(section,
        h('h2', {}, 'Scrapyd jobs'),
        jobs.length
          ? h('ul', { class: 'plain' }, jobs.map((job) => h('li', {},
            h('span', { class: 'mono' }, job.id),
            ` ${job.kind}, scheduled ${dateTime(job.scheduled_at)}`,
            job.active ? ' (running)' : '')))
          : h('p', { class: 'muted' }, 'None (run from the command line).'));
    },
  };
}

// The batch's schema, options, prompt and the batch it re-runs (drawn once: they never change).
export function inputsPanel() {
  const section = h('section', { id: 'inputs' });
  return {
    element: section,
    draw(batch) {
      if (section.childElementCount) return;
      replace(section,
        h('h2', {}, 'Inputs'),
        h('details', {}, h('summary', {}, 'Schema'), h('pre', { class: 'json' }, json(batch.schema))),
        h('details', {}, h('summary', {}, 'Options'), h('pre', { class: 'json' }, json(batch.options))),
        batch.prompt ? h('details', {}, h('summary', {}, 'Prompt'), h('pre', {}, batch.prompt)) : null,
        BATCH_ID.test(batch.rerun_of || '')
          ? h('p', {}, 'Re-run of ', h('a', { href: `#/batches/${batch.rerun_of}` }, batch.rerun_of))
          : null,
        SCHEDULE_ID.test((batch.schedule || {}).id || '')
          ? h('p', { class: 'made-by-schedule' }, 'Run of schedule ',
            h('a', { href: `#/schedules/${batch.schedule.id}` }, batch.schedule.id))
          : null);
    },
  };
}

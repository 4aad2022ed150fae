// The panels of a batch compared with an earlier run or judged by monitors: "Changes" (counts per
// change status and the changed items with old -> new per field, read from /changes when the
// counts moved) and "Monitors" (each result; a failed one red). Each is `{ element, draw(...) }`.

import { h, replace } from './dom.js';
import { count } from './format.js';

const STATUSES = ['new', 'changed', 'unchanged', 'gone', 'failed_now', 'recovered'];
const SHOWN = 50; // changed items on the page; the rest through the API (/changes, NDJSON)

// values too large to keep on the change (values_omitted) show their sizes
const oldToNew = (values) => (values.values_omitted
  ? `${count(values.old_bytes)} → ${count(values.new_bytes)} bytes (values omitted)`
  : `${JSON.stringify(values.old)} → ${JSON.stringify(values.new)}`);

// `focus`: scroll the panel into view when it is first shown.
export function changesPanel(ctx, path, { focus = false } = {}) {
  const element = h('section', { id: 'changes', class: 'panel', hidden: true });
  let drawn = '';
  let scrolled = !focus;

  const show = (batch, answer) => {
    replace(element,
      h('h2', {}, 'Changes since ', h('a', { href: `#/batches/${batch.compare_to}`, class: 'mono' },
        batch.compare_to)),
      h('dl', { class: 'grid', id: 'change-counts' }, STATUSES.map((status) => h('div', {},
        h('dt', {}, status.replace('_', ' ')),
        h('dd', { dataset: { change: status } }, count(batch.changes[status] || 0))))),
      answer.items.length ? h('table', { class: 'compact', id: 'changes-table' },
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Change'), h('th', {}, 'URL'),
          h('th', {}, 'Fields: old → new'))),
        h('tbody', {}, answer.items.map((item) => h('tr', { dataset: { index: item.index } },
          h('td', { class: 'num' }, String(item.index)),
          h('td', {}, item.change.status),
          h('td', { class: 'clip', title: item.url }, item.url),
          h('td', {}, Object.entries(item.change.fields || {}).map(([name, values]) => h('div', {},
            h('strong', {}, name), ': ', oldToNew(values)))))))) : null,
      answer.pagination.total > SHOWN
        ? h('p', { class: 'hint' }, `${count(SHOWN)} of ${count(answer.pagination.total)} shown`)
        : null);
  };

  return {
    element,
    draw(batch) {
      element.hidden = !batch.compare_to;
      const signature = JSON.stringify(batch.changes || {});
      if (!batch.compare_to || signature === drawn) return;
      drawn = signature;
      ctx.api.json('GET', `${path}/changes`, { query: { limit: SHOWN } })
        .then((answer) => {
          if (ctx.closed) return;
          show(batch, answer);
          if (!scrolled) element.scrollIntoView({ block: 'start' });
          scrolled = true;
        })
        .catch((error) => { drawn = ''; ctx.fail(error); });
    },
  };
}

export function monitorsPanel() {
  const element = h('section', { id: 'monitors', class: 'panel', hidden: true });
  return {
    element,
    draw(results) {
      element.hidden = !results?.length;
      if (!results?.length) return;
      const failed = results.filter((result) => !result.ok).length;
      replace(element,
        h('h2', { class: failed ? 'bad' : '' }, failed ? `Monitors: ${failed} failed` : 'Monitors: all passed'),
        h('table', { class: 'compact' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Monitor'), h('th', {}, 'Value'),
            h('th', {}, 'Threshold'), h('th', {}, 'Result'))),
          h('tbody', {}, results.map((result) => h('tr', {
            class: result.ok ? 'monitor-ok' : 'monitor-failed', dataset: { monitor: result.name },
          },
          h('td', { class: 'mono' }, result.name),
          h('td', { class: 'num' }, String(result.value)),
          h('td', { class: 'num' }, String(result.threshold)),
          h('td', {}, result.ok ? 'ok' : 'FAILED'))))));
    },
  };
}

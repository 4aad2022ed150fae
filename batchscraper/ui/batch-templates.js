// The "Templates" panel of a batch: the learned templates its pages used, with this batch's
// pages, misses and hit rate for each (the batch's `templates` counts, on every poll) and what
// the template is (host, version, status, fields: read from /templates?batch_id= when a
// template was added, learned, missed or audited, which is when its status can change).
// `{ element, draw(batch) }`.

import { h, replace } from './dom.js';
import { count, percent } from './format.js';

// Only the statuses the API knows (and `deleted`: no longer in /templates) become class names.
const STATUSES = ['learning', 'verifying', 'active', 'retired', 'abandoned', 'deleted'];
const SHOWN = 50; // templates on the page; a batch uses one or a few per host
const COLUMNS = ['Template', 'Host', 'Version', 'Status', 'Pages', 'Misses', 'Hit rate',
  'Audits agreed', 'Fields'];

export function templatesPanel(ctx, batchId) {
  const element = h('section', { id: 'templates', class: 'panel', hidden: true });
  const known = new Map(); // template id -> its summary from /templates
  let read = ''; // the counts that made the last read of /templates

  const show = (counts) => {
    const rows = Object.entries(counts)
      .map(([id, used]) => ({ id, used, template: known.get(id) }))
      .sort((a, b) => (b.used.pages || 0) - (a.used.pages || 0) || a.id.localeCompare(b.id));
    const pages = rows.reduce((sum, row) => sum + (row.used.pages || 0), 0);
    const misses = rows.reduce((sum, row) => sum + (row.used.misses || 0), 0);
    replace(element,
      h('h2', {}, 'Templates'),
      h('p', { class: 'hint', id: 'templates-summary' },
        `${count(pages)} pages extracted by learned templates, without an LLM; `
        + `${count(misses)} misses (answered by the LLM). Hit rate: pages / (pages + misses) `
        + 'in this batch.'),
      h('table', { class: 'compact', id: 'templates-table' },
        h('thead', {}, h('tr', {}, COLUMNS.map((name) => h('th', { scope: 'col' }, name)))),
        h('tbody', {}, rows.slice(0, SHOWN).map(templateRow))));
  };

  const fetchAndShow = (counts) => {
    ctx.api.json('GET', 'templates', { query: { batch_id: batchId, limit: SHOWN } })
      .then((answer) => {
        if (ctx.closed) return;
        known.clear();
        for (const template of answer.templates) known.set(template.template_id, template);
        show(counts);
      })
      .catch((error) => { read = ''; ctx.fail(error); });
  };

  return {
    element,
    draw(batch) {
      const counts = batch.templates || {};
      element.hidden = !Object.keys(counts).length;
      if (element.hidden) return;
      const changes = JSON.stringify(Object.entries(counts).map(([id, used]) => [
        id, used.learned, used.misses, used.audits, used.disagreements]));
      if (changes === read) {
        show(counts); // only pages moved: the templates are as read
        return;
      }
      read = changes;
      fetchAndShow(counts);
    },
  };
}

function templateRow({ id, used, template }) {
  const status = template ? template.status : 'deleted';
  const state = STATUSES.includes(status) ? status : 'unknown';
  const pages = used.pages || 0;
  const misses = used.misses || 0;
  const audits = used.audits || 0;
  return h('tr', { class: `template-${state}`, dataset: { template: id } },
    h('td', { class: 'mono' }, id),
    h('td', { class: 'mono clip', title: template?.host || '' }, template?.host || '–'),
    h('td', { class: 'num' }, template ? `v${template.version}` : '–'),
    h('td', { title: template?.reason || '' }, String(status)),
    h('td', { class: 'num' }, count(pages)),
    h('td', { class: 'num' }, count(misses)),
    h('td', { class: 'num' }, pages + misses ? percent(pages / (pages + misses)) : '–'),
    h('td', { class: 'num' },
      audits ? `${count(audits - (used.disagreements || 0))} of ${count(audits)}` : '–'),
    h('td', { class: 'clip' }, (template?.fields || []).join(', ')));
}

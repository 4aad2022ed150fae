// A batch's actions: cancel, retry the failed items, export the records, schedule it.

import { h } from './dom.js';
import { FINAL_STATUSES } from './format.js';
import { exportRecords } from './export.js';

// `after.refresh()` reloads the page's data; `after.restartPace()` forgets the pace so far;
// `columns`: the schema's field paths, the CSV export's record columns; `scheduleForm`: the
// "Schedule this batch" form the button opens.
export function actionsPanel(ctx, batchId, after, columns, scheduleForm) {
  const path = `batches/${batchId}`;
  const cancel = h('button', { type: 'button', id: 'cancel-batch', class: 'danger' }, 'Cancel batch');
  const retry = h('button', { type: 'button', id: 'retry-failed' }, 'Retry failed');
  const onlyRetryable = h('input', { type: 'checkbox', id: 'only-retryable' });
  const exportJsonl = h('button', { type: 'button', id: 'export-jsonl' }, 'Export JSONL');
  const exportCsv = h('button', { type: 'button', id: 'export-csv' }, 'Export CSV');
  const schedule = h('button', { type: 'button', id: 'schedule-batch', onclick: () => scheduleForm.open() },
    'Schedule this batch');

  cancel.addEventListener('click', async () => {
    if (!(await ctx.confirm(`Cancel batch ${batchId}? Unfinished items become cancelled.`))) return;
    cancel.disabled = true;
    try {
      const answer = await ctx.api.json('DELETE', path);
      ctx.notify(`Batch cancelled: ${answer.counters.cancelled} item(s) cancelled.`);
      await after.refresh();
    } catch (error) {
      ctx.fail(error);
      cancel.disabled = false;
    }
  });

  retry.addEventListener('click', async () => {
    retry.disabled = true;
    try {
      const answer = await ctx.api.json('POST', `${path}/retry`, {
        body: { only_retryable: onlyRetryable.checked },
      });
      ctx.notify(`${answer.retried} failed item(s) queued again.`);
      after.restartPace();
      await after.refresh();
    } catch (error) {
      ctx.fail(error);
      retry.disabled = false;
    }
  });

  for (const [button, format] of [[exportJsonl, 'jsonl'], [exportCsv, 'csv']]) {
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const written = await exportRecords(ctx.api, batchId, format, columns);
        ctx.notify(`Exported ${written} record(s) as ${format.toUpperCase()}.`);
      } catch (error) {
        ctx.fail(error);
      } finally {
        button.disabled = false;
      }
    });
  }

  return {
    element: h('div', { class: 'actions' },
      cancel, retry,
      h('label', { class: 'inline' }, onlyRetryable, ' only retryable errors'),
      h('span', { class: 'spacer' }), exportJsonl, exportCsv, schedule),
    draw(batch) {
      const final = FINAL_STATUSES.includes(batch.status);
      cancel.disabled = final;
      retry.disabled = !final || !batch.counters.failed;
    },
  };
}

// "Schedule this batch" on a batch's page: a name, a cron line and a time zone make a schedule
// that runs the batch's inputs again (POST /schedules with rerun_of), keeping its monitors if
// asked; the API's 422 problems appear under the field they concern.

import { h } from './dom.js';
import { FieldErrors } from './field-errors.js';
import { zonedTime } from './format.js';

const FIELDS = ['name', 'cron', 'timezone'];
const ZONE_LIST = 'schedule-zones';

// `detail`: the batch as GET /batches/{id} reads it (its id, name and monitor rules).
export function scheduleFormPanel(ctx, detail) {
  const errors = new FieldErrors((name) => `schedule-${name}`);
  const fields = scheduleFields(detail, errors);
  const create = h('button', { type: 'submit', class: 'primary', id: 'create-schedule' }, 'Create schedule');
  const form = h('form', { id: 'schedule-form', class: 'panel', hidden: true, novalidate: true },
    h('h2', {}, 'Schedule this batch'),
    h('p', { class: 'hint' }, 'Each run crawls this batch’s URLs again with its schema and options, '
      + 'and is compared with the run before it.'),
    errors.slot('form', 'banner banner-error', 'schedule-'),
    fields.element,
    h('div', { class: 'actions' }, create,
      h('button', { type: 'button', class: 'quiet', onclick: () => { form.hidden = true; } }, 'Cancel')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.clearAll(form);
    create.disabled = true;
    try {
      const schedule = await ctx.api.json('POST', 'schedules', { body: fields.value() });
      ctx.navigate(`#/schedules/${schedule.schedule_id}`, `Schedule created: next run `
        + `${zonedTime(schedule.next_run_at, schedule.timezone)} (${schedule.timezone}).`);
    } catch (failure) {
      if (failure.status !== 401) showProblems(errors, failure);
    } finally {
      create.disabled = false;
    }
  });

  return {
    element: form,
    open() {
      form.hidden = false;
      form.scrollIntoView({ block: 'nearest' });
      fields.focus();
    },
  };
}

// The name, cron line, time zone and monitors choice; `value()`: the POST /schedules body.
function scheduleFields(detail, errors) {
  const name = h('input', { id: 'schedule-name', maxlength: 200, value: detail.name || '',
    placeholder: 'e.g. nightly prices' });
  const cron = h('input', { id: 'schedule-cron', class: 'mono', placeholder: '0 3 * * *',
    spellcheck: 'false', autocomplete: 'off' });
  const timezone = h('input', { id: 'schedule-timezone', list: ZONE_LIST, value: browserZone(),
    spellcheck: 'false', autocomplete: 'off' });
  const keepMonitors = detail.monitor_rules
    ? h('input', { type: 'checkbox', id: 'schedule-monitors', checked: true }) : null;
  return {
    element: [
      h('div', { class: 'schedule-fields' },
        fieldRow('name', 'Name', name, 'optional; the runs are named after it', errors),
        fieldRow('cron', 'Cron', cron, 'minute hour day month weekday: 0 3 * * * is 03:00 daily', errors),
        fieldRow('timezone', 'Time zone', timezone, 'IANA name: the cron’s hours are in it', errors)),
      keepMonitors ? h('label', { class: 'inline' }, keepMonitors, ' run its monitors on every run ',
        h('code', {}, JSON.stringify(detail.monitor_rules))) : null,
      zoneList(),
    ],
    value() {
      const batch = { rerun_of: detail.batch_id };
      if (keepMonitors?.checked) batch.monitors = detail.monitor_rules;
      const body = { cron: cron.value.trim(), timezone: timezone.value.trim() || 'UTC', batch };
      if (name.value.trim()) body.name = name.value.trim();
      return body;
    },
    focus() {
      cron.focus();
    },
  };
}

function fieldRow(name, label, input, hint, errors) {
  return h('div', { class: 'schedule-field' },
    h('label', { for: input.id }, label), input, h('span', { class: 'hint' }, hint),
    errors.slot(name, 'field-error', 'schedule-'));
}

// Each problem of a 422 under its field (name, cron, time zone); the others (the batch
// template's) together above the fields.
function showProblems(errors, failure) {
  const details = Array.isArray(failure.details) ? failure.details : [];
  if (!details.length) {
    errors.show('form', `${failure.code}: ${failure.detail ?? failure.message}`);
    return;
  }
  const others = [];
  for (const name of FIELDS) {
    const mine = details.filter((problem) => problem.field === name);
    if (mine.length) errors.show(name, mine.map(problemText).join('; '));
  }
  for (const problem of details) {
    if (!FIELDS.includes(problem.field)) others.push(h('li', {}, `${problem.field}: ${problemText(problem)}`));
  }
  if (others.length) errors.show('form', `${failure.code}:`, h('ul', {}, others));
}

const problemText = (problem) => `${problem.message || problem.reason || ''} (${problem.code})`;

function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

function zoneList() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return h('datalist', { id: ZONE_LIST }, ['UTC', ...zones].map((zone) => h('option', { value: zone })));
}

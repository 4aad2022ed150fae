// The submit form: URLs (text or file), schema (JSON Schema, field rows or a profile),
// prompt and options; the API's 4xx errors are shown next to the field they concern.

import { h, replace } from './dom.js';

// batchscraper.profiles.profile_names(); the API answers INVALID_SCHEMA for any other name
export const PROFILES = ['article', 'event', 'faq', 'job_posting', 'product', 'recipe'];
const FIELD_TYPES = ['string', 'number', 'integer', 'boolean', 'date', 'datetime', 'url', 'email', 'array'];
const NUMBER_OPTIONS = [
  ['concurrency', 'requests in flight', 8],
  ['timeout_per_url', 'seconds per URL', 30],
  ['retries', 'retries of network errors and 408/429/5xx', 2],
  ['max_items_per_url', 'more than 1: list pages', 1],
  ['max_total_items', 'records per batch', 5000],
  ['parallel_jobs', 'spider processes', 1],
  ['max_llm_calls', 'LLM calls for the batch', null],
  ['max_cost_usd', 'LLM spend (USD)', null],
];
const CHOICE_OPTIONS = [
  ['render_js', ['auto', 'always', 'never']],
  ['grounding', ['flag', 'strict']],
];
const FORMATS = ['json', 'markdown', 'text', 'html'];
const MAX_PROMPT = 4000;
const EXAMPLE_SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string' }, price: { type: 'number' } },
  required: ['name'],
};

export async function renderSubmit(view, ctx) {
  const errors = {};
  const slot = (name) => {
    errors[name] = h('p', { class: 'field-error', id: `error-${name}`, role: 'alert', hidden: true });
    return errors[name];
  };
  let fileEntries = null;
  let idempotencyKey = randomKey();

  // -- URLs
  const urls = h('textarea', {
    id: 'urls', rows: 6, spellcheck: 'false',
    placeholder: 'https://shop.example/p/1\nhttps://shop.example/p/2',
  });
  const urlsFile = h('input', { type: 'file', id: 'urls-file', accept: '.txt,.csv,.json,.jsonl' });
  const urlCount = h('span', { class: 'muted', id: 'url-count' });
  const countUrls = () => {
    const entries = fileEntries || textEntries(urls.value);
    const source = fileEntries ? ' from the file' : '';
    replace(urlCount, Array.isArray(entries) ? `${entries.length} URL(s)${source}` : '');
  };
  urls.addEventListener('input', countUrls);
  urlsFile.addEventListener('change', async () => {
    fileEntries = null;
    const file = urlsFile.files[0];
    clearError('urls');
    if (file) {
      try {
        fileEntries = fileUrlEntries(file.name, await file.text());
      } catch (failure) {
        showError('urls', failure.message);
      }
    }
    countUrls();
  });

  // -- schema
  const modes = ['json', 'fields', 'profile'];
  const modeLabels = { json: 'JSON Schema', fields: 'Field list', profile: 'Profile' };
  const modeRadios = modes.map((mode) => h('input', {
    type: 'radio', name: 'schema-mode', id: `schema-mode-${mode}`, value: mode, checked: mode === 'json',
  }));
  const schemaJson = h('textarea', { id: 'schema-json', rows: 10, spellcheck: 'false', class: 'mono' });
  schemaJson.value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
  const jsonStatus = h('p', { id: 'schema-json-status', class: 'hint' });
  const checkJson = () => {
    const result = parseSchemaText(schemaJson.value);
    jsonStatus.className = `hint ${result.error ? 'bad' : 'good'}`;
    replace(jsonStatus, result.error || 'Valid JSON.');
    schemaJson.setAttribute('aria-invalid', result.error ? 'true' : 'false');
    return result;
  };
  schemaJson.addEventListener('input', checkJson);
  checkJson();
  const fieldRows = h('tbody', { id: 'field-rows' });
  const addField = (name = '', type = 'string', required = false) => {
    const row = h('tr', {},
      h('td', {}, h('input', { class: 'field-name', value: name, 'aria-label': 'Field name' })),
      h('td', {}, h('select', { class: 'field-type', 'aria-label': 'Field type' },
        FIELD_TYPES.map((t) => h('option', { value: t, selected: t === type }, t)))),
      h('td', {}, h('input', {
        type: 'checkbox', class: 'field-required', checked: required, 'aria-label': 'Required',
      })),
      h('td', {}, h('input', { class: 'field-description', 'aria-label': 'Description' })),
      h('td', {}, h('button', { type: 'button', class: 'quiet', onclick: () => row.remove() }, 'Remove')));
    fieldRows.append(row);
  };
  addField('name', 'string', true);
  addField('price', 'number');
  const profile = h('select', { id: 'schema-profile' },
    PROFILES.map((name) => h('option', { value: name }, name)));
  const panes = {
    json: h('div', { class: 'pane' }, schemaJson, jsonStatus),
    fields: h('div', { class: 'pane', hidden: true },
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {},
          ['Field', 'Type', 'Required', 'Description', ''].map((t) => h('th', {}, t)))),
        fieldRows),
      h('button', { type: 'button', onclick: () => addField() }, 'Add field')),
    profile: h('div', { class: 'pane', hidden: true }, h('label', {}, 'profile:', profile),
      h('p', { class: 'hint' }, 'A built-in schema with schema.org field names.')),
  };
  const mode = () => modeRadios.find((radio) => radio.checked).value;
  for (const radio of modeRadios) {
    radio.addEventListener('change', () => {
      for (const [name, pane] of Object.entries(panes)) pane.hidden = name !== mode();
    });
  }

  // -- prompt and options
  const prompt = h('textarea', { id: 'prompt', rows: 3, maxlength: MAX_PROMPT });
  const promptCount = h('span', { class: 'muted' }, `0 / ${MAX_PROMPT}`);
  prompt.addEventListener('input', () => replace(promptCount, `${prompt.value.length} / ${MAX_PROMPT}`));
  const optionInputs = {};
  const limits = await optionLimits(ctx);
  const numberRows = NUMBER_OPTIONS.map(([name, meaning, fallback]) => {
    const limit = limits[name] || {};
    const range = limit.maximum === undefined
      ? `at least ${limit.minimum ?? 0}`
      : `${limit.minimum}–${limit.maximum}`;
    optionInputs[name] = h('input', {
      type: 'number', id: `option-${name}`, name, min: limit.minimum, max: limit.maximum,
      step: name === 'timeout_per_url' || name === 'max_cost_usd' ? 'any' : 1,
      placeholder: fallback === null ? 'no limit' : String(fallback),
    });
    return optionRow(name, optionInputs[name], `${meaning}; ${range}`, slot(`option-${name}`));
  });
  const choiceRows = CHOICE_OPTIONS.map(([name, choices]) => {
    optionInputs[name] = h('select', { id: `option-${name}`, name },
      choices.map((choice) => h('option', { value: choice }, choice)));
    return optionRow(name, optionInputs[name], choices.join(', '), slot(`option-${name}`));
  });
  optionInputs.fail_fast = h('input', { type: 'checkbox', id: 'option-fail_fast' });
  const formatBoxes = FORMATS.map((format) => h('input', {
    type: 'checkbox', value: format, checked: format === 'json', class: 'format',
  }));
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-batch' }, 'Submit batch');

  const form = h('form', { id: 'submit-form', novalidate: true },
    h('p', { class: 'banner banner-error', id: 'error-form', role: 'alert', hidden: true }),
    h('fieldset', {}, h('legend', {}, 'URLs'),
      h('label', { for: 'urls' }, 'One per line (# starts a comment), or a JSON array'),
      urls,
      h('div', { class: 'row' },
        h('label', { for: 'urls-file' }, 'or a file (.txt, .csv with a url column, .json, .jsonl): '),
        urlsFile, urlCount),
      slot('urls')),
    h('fieldset', {}, h('legend', {}, 'Schema'),
      h('div', { class: 'row' }, modes.map((m, i) =>
        h('label', { class: 'inline' }, modeRadios[i], ` ${modeLabels[m]}`))),
      panes.json, panes.fields, panes.profile,
      slot('schema')),
    h('fieldset', {}, h('legend', {}, 'Prompt (optional)'),
      prompt, promptCount, slot('prompt')),
    h('fieldset', {}, h('legend', {}, 'Options'),
      h('p', { class: 'hint' }, 'Empty fields keep their default (shown greyed).'),
      h('div', { class: 'options' }, numberRows, choiceRows,
        optionRow('fail_fast', optionInputs.fail_fast, 'stop at the first failed URL',
          slot('option-fail_fast')),
        optionRow('formats', h('span', { id: 'option-formats' }, formatBoxes.map((box) =>
          h('label', { class: 'inline' }, box, ` ${box.value} `))),
        'what to keep besides the record', slot('option-formats'))),
      slot('options')),
    h('div', { class: 'actions' }, submit));
  replace(view, h('h1', {}, 'New batch'), form);

  function showError(name, message, details) {
    const target = errors[name] || errors.form;
    replace(target, message, details);
    target.hidden = false;
    const input = document.getElementById(name === 'schema' ? schemaInputId() : name);
    if (input) input.setAttribute('aria-invalid', 'true');
    target.scrollIntoView({ block: 'center' });
  }
  function clearError(name) {
    errors[name].hidden = true;
    replace(errors[name]);
  }
  function schemaInputId() {
    return { json: 'schema-json', fields: 'field-rows', profile: 'schema-profile' }[mode()];
  }
  errors.form = form.querySelector('#error-form');

  const body = () => {
    const entries = fileEntries || textEntries(urls.value);
    if (!Array.isArray(entries) || !entries.length) {
      throw new FormError('urls', Array.isArray(entries) ? 'Enter at least one URL.' : entries);
    }
    const request = { urls: entries, schema: schemaValue() };
    if (prompt.value.trim()) request.prompt = prompt.value;
    const options = {};
    for (const [name] of NUMBER_OPTIONS) {
      if (optionInputs[name].value.trim() !== '') options[name] = Number(optionInputs[name].value);
      else if (optionInputs[name].validity.badInput) {
        throw new FormError(`option-${name}`, `${name}: not a number`);
      }
    }
    for (const [name, choices] of CHOICE_OPTIONS) {
      if (optionInputs[name].value !== choices[0]) options[name] = optionInputs[name].value;
    }
    if (optionInputs.fail_fast.checked) options.fail_fast = true;
    const formats = formatBoxes.filter((box) => box.checked).map((box) => box.value);
    if (formats.join() !== 'json') options.formats = formats;
    if (Object.keys(options).length) request.options = options;
    return request;
  };

  const schemaValue = () => {
    if (mode() === 'profile') return `profile:${profile.value}`;
    if (mode() === 'fields') {
      return [...fieldRows.rows].map((row) => {
        const entry = {
          field: row.querySelector('.field-name').value.trim(),
          type: row.querySelector('.field-type').value,
        };
        if (row.querySelector('.field-required').checked) entry.required = true;
        const description = row.querySelector('.field-description').value.trim();
        if (description) entry.description = description;
        return entry;
      });
    }
    const result = checkJson();
    if (result.error) throw new FormError('schema', result.error);
    return result.value;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const name of Object.keys(errors)) clearError(name);
    for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute('aria-invalid');
    let request = null;
    try {
      request = body();
    } catch (failure) {
      if (!(failure instanceof FormError)) throw failure;
      showError(failure.field, failure.message);
      return;
    }
    submit.disabled = true;
    try {
      const answer = await ctx.api.json('POST', 'batches', {
        body: request, headers: { 'Idempotency-Key': idempotencyKey },
      });
      ctx.navigate(`#/batches/${answer.batch_id}`);
      ctx.notify(`Batch ${answer.batch_id} submitted: ${answer.total} URL(s).`);
    } catch (failure) {
      if (failure.status && failure.status < 500) idempotencyKey = randomKey(); // nothing stored
      if (failure.status === 401) return;
      const [name, details] = errorField(failure, optionInputs);
      showError(name, `${failure.code}: ${failure.detail ?? failure.message}`, details);
    } finally {
      submit.disabled = false;
    }
  });
  countUrls();
}

class FormError extends Error {
  constructor(fieldName, message) {
    super(message);
    this.field = fieldName;
  }
}

function optionRow(name, input, hint, error) {
  return h('div', { class: 'option' },
    h('label', { for: input.id }, name), input, h('span', { class: 'hint' }, hint), error);
}

// Which form field an API error is about, and its per-URL details as a list.
function errorField(error, optionInputs) {
  const message = error.detail || '';
  const prefix = (message.match(/^([a-z_]+)[.:]/) || [])[1];
  if (error.code === 'INVALID_URL' || (error.code === 'TOO_LARGE' && prefix === 'urls')) {
    const details = Array.isArray(error.details)
      ? h('ul', {}, error.details.map((bad) =>
        h('li', {}, `#${bad.index} `, h('code', {}, String(bad.url ?? '')), `: ${bad.reason ?? ''}`)))
      : null;
    return ['urls', details];
  }
  if (error.code === 'INVALID_SCHEMA') return ['schema', null];
  if (error.code === 'INVALID_OPTION') {
    return [prefix && optionInputs[prefix] ? `option-${prefix}` : 'options', null];
  }
  if (error.code === 'INVALID_INPUT' && ['urls', 'schema', 'prompt', 'options'].includes(prefix)) {
    return [prefix, null];
  }
  return ['form', null];
}

// The text box: a JSON array, or one URL per line with # comments.
function textEntries(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    try {
      const parsed = JSON.parse(trimmed);
      return Array.isArray(parsed) ? parsed : 'The JSON must be an array.';
    } catch (failure) {
      return `Not valid JSON: ${failure.message}`;
    }
  }
  return lineEntries(trimmed);
}

function lineEntries(text) {
  return text.split(/\r?\n/).map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
}

// A URL file, read the way the command line reads @file (by its extension).
function fileUrlEntries(name, text) {
  const lower = name.toLowerCase();
  if (lower.endsWith('.json')) {
    const parsed = JSON.parse(text);
    if (!Array.isArray(parsed)) throw new Error(`${name}: must hold a JSON array`);
    return parsed;
  }
  if (lower.endsWith('.jsonl')) {
    return text.split('\n').filter((line) => line.trim()).map((line, number) => {
      try {
        return JSON.parse(line);
      } catch {
        throw new Error(`${name}: line ${number + 1} is not valid JSON`);
      }
    });
  }
  if (lower.endsWith('.csv')) return csvUrls(name, text);
  return lineEntries(text);
}

function csvUrls(name, text) {
  const lines = text.split(/\r?\n/).filter((line) => line.trim());
  const header = splitCsvLine(lines.shift() || '').map((cell) => cell.trim().toLowerCase());
  const column = header.indexOf('url');
  if (column < 0) throw new Error(`${name}: has no 'url' column`);
  return lines.map((line) => (splitCsvLine(line)[column] || '').trim()).filter(Boolean);
}

function splitCsvLine(line) {
  const cells = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const char = line[i];
    if (quoted && char === '"' && line[i + 1] === '"') {
      cell += '"';
      i += 1;
    } else if (char === '"') {
      quoted = !quoted;
    } else if (char === ',' && !quoted) {
      cells.push(cell);
      cell = '';
    } else {
      cell += char;
    }
  }
  cells.push(cell);
  return cells;
}

function parseSchemaText(text) {
  if (!text.trim()) return { error: 'Enter a JSON Schema.' };
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== 'object') {
      return { error: 'A schema is a JSON object (or a field list array).' };
    }
    return { value };
  } catch (failure) {
    return { error: `Invalid JSON: ${failure.message}` };
  }
}

async function optionLimits(ctx) {
  try {
    const spec = await ctx.api.json('GET', 'openapi.json');
    return spec.components.schemas.BatchSubmit.properties.options.properties;
  } catch (failure) {
    ctx.fail(failure);
    return {};
  }
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `ui-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

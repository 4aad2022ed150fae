// The submit form: URLs (text or file), schema (JSON Schema, field rows or a profile),
// prompt and options; the API's 4xx errors are shown next to the field they concern.

import { h, replace } from './dom.js';
import { FieldErrors } from './field-errors.js';
import { FormError, schemaSection } from './schema-input.js';
import { fileUrlEntries, textEntries } from './url-lists.js';

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
export async function renderSubmit(view, ctx) {
  const errors = new FieldErrors();
  const limits = await optionLimits(ctx);
  const labels = labelsSection(errors);
  const urls = urlsSection(errors);
  const schema = schemaSection(errors);
  const prompt = promptSection(errors);
  const options = optionsSection(errors, limits);
  const submit = h('button', { type: 'submit', class: 'primary', id: 'submit-batch' }, 'Submit batch');
  const form = h('form', { id: 'submit-form', novalidate: true },
    errors.slot('form', 'banner banner-error'),
    labels.element, urls.element, schema.element, prompt.element, options.element,
    h('div', { class: 'actions' }, submit));
  replace(view, h('h1', {}, 'New batch'), form);
  errors.inputId = (name) => (name === 'schema' ? schema.inputId() : name);

  const body = () => {
    const request = { ...labels.value(), urls: urls.value(), schema: schema.value() };
    if (prompt.value()) request.prompt = prompt.value();
    const chosen = options.value();
    if (Object.keys(chosen).length) request.options = chosen;
    return request;
  };

  let idempotencyKey = randomKey();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    errors.clearAll(form);
    let request = null;
    try {
      request = body();
    } catch (failure) {
      if (!(failure instanceof FormError)) throw failure;
      errors.show(failure.field, failure.message);
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
      const [name, details] = errorField(failure, options.inputs);
      errors.show(name, `${failure.code}: ${failure.detail ?? failure.message}`, details);
    } finally {
      submit.disabled = false;
    }
  });
  urls.count();
}

// A name and tags to find the batch by (both optional; tags separated by commas).
function labelsSection(errors) {
  const name = h('input', { id: 'name', maxlength: 200, placeholder: 'e.g. Shoes, spring prices' });
  const tags = h('input', { id: 'tags', placeholder: 'e.g. shop-a, weekly' });
  return {
    element: h('fieldset', {}, h('legend', {}, 'Name and tags (optional)'),
      h('div', { class: 'row' },
        h('label', { for: 'name' }, 'Name '), name, errors.slot('name'),
        h('label', { for: 'tags' }, 'Tags '), tags, errors.slot('tags'))),
    value() {
      const given = {};
      if (name.value.trim()) given.name = name.value.trim();
      const list = tags.value.split(',').map((tag) => tag.trim()).filter(Boolean);
      if (list.length) given.tags = list;
      return given;
    },
  };
}

// URLs: typed (one per line, or a JSON array) or from a file.
function urlsSection(errors) {
  let fileEntries = null;
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
    errors.clear('urls');
    if (file) {
      try {
        fileEntries = fileUrlEntries(file.name, await file.text());
      } catch (failure) {
        errors.show('urls', failure.message);
      }
    }
    countUrls();
  });
  return {
    element: h('fieldset', {}, h('legend', {}, 'URLs'),
      h('label', { for: 'urls' }, 'One per line (# starts a comment), or a JSON array'),
      urls,
      h('div', { class: 'row' },
        h('label', { for: 'urls-file' }, 'or a file (.txt, .csv with a url column, .json, .jsonl): '),
        urlsFile, urlCount),
      errors.slot('urls')),
    count: countUrls,
    value() {
      const entries = fileEntries || textEntries(urls.value);
      if (!Array.isArray(entries) || !entries.length) {
        throw new FormError('urls', Array.isArray(entries) ? 'Enter at least one URL.' : entries);
      }
      return entries;
    },
  };
}

function promptSection(errors) {
  const prompt = h('textarea', { id: 'prompt', rows: 3, maxlength: MAX_PROMPT });
  const promptCount = h('span', { class: 'muted' }, `0 / ${MAX_PROMPT}`);
  prompt.addEventListener('input', () => replace(promptCount, `${prompt.value.length} / ${MAX_PROMPT}`));
  return {
    element: h('fieldset', {}, h('legend', {}, 'Prompt (optional)'),
      prompt, promptCount, errors.slot('prompt')),
    value: () => (prompt.value.trim() ? prompt.value : ''),
  };
}

// The options, each with its range (`limits`: the API's, from its OpenAPI document).
function optionsSection(errors, limits) {
  const inputs = {};
  const numberRows = NUMBER_OPTIONS.map(([name, meaning, fallback]) => {
    const limit = limits[name] || {};
    const range = limit.maximum === undefined
      ? `at least ${limit.minimum ?? 0}`
      : `${limit.minimum}–${limit.maximum}`;
    inputs[name] = h('input', {
      type: 'number', id: `option-${name}`, name, min: limit.minimum, max: limit.maximum,
      step: name === 'timeout_per_url' || name === 'max_cost_usd' ? 'any' : 1,
      placeholder: fallback === null ? 'no limit' : String(fallback),
    });
    return optionRow(name, inputs[name], `${meaning}; ${range}`, errors.slot(`option-${name}`));
  });
  const choiceRows = CHOICE_OPTIONS.map(([name, choices]) => {
    inputs[name] = h('select', { id: `option-${name}`, name },
      choices.map((choice) => h('option', { value: choice }, choice)));
    return optionRow(name, inputs[name], choices.join(', '), errors.slot(`option-${name}`));
  });
  inputs.fail_fast = h('input', { type: 'checkbox', id: 'option-fail_fast' });
  const formatBoxes = FORMATS.map((format) => h('input', {
    type: 'checkbox', value: format, checked: format === 'json', class: 'format',
  }));
  return {
    inputs,
    element: h('fieldset', {}, h('legend', {}, 'Options'),
      h('p', { class: 'hint' }, 'Empty fields keep their default (shown greyed).'),
      h('div', { class: 'options' }, numberRows, choiceRows,
        optionRow('fail_fast', inputs.fail_fast, 'stop at the first failed URL',
          errors.slot('option-fail_fast')),
        optionRow('formats', h('span', { id: 'option-formats' }, formatBoxes.map((box) =>
          h('label', { class: 'inline' }, box, ` ${box.value} `))),
        'what to keep besides the record', errors.slot('option-formats'))),
      errors.slot('options')),
    // the options that differ from their defaults
    value() {
      const options = {};
      for (const [name] of NUMBER_OPTIONS) {
        if (inputs[name].value.trim() !== '') options[name] = Number(inputs[name].value);
        else if (inputs[name].validity.badInput) {
          throw new FormError(`option-${name}`, `${name}: not a number`);
        }
      }
      for (const [name, choices] of CHOICE_OPTIONS) {
        if (inputs[name].value !== choices[0]) options[name] = inputs[name].value;
      }
      if (inputs.fail_fast.checked) options.fail_fast = true;
      const formats = formatBoxes.filter((box) => box.checked).map((box) => box.value);
      if (formats.join() !== 'json') options.formats = formats;
      return options;
    },
  };
}

function optionRow(name, input, hint, error) {
  return h('div', { class: 'option' },
    h('label', { for: input.id }, name), input, h('span', { class: 'hint' }, hint), error);
}

// Which form field an API error is about, and its per-URL details as a list.
function errorField(error, optionInputs) {
  const message = error.detail || '';
  const prefix = (message.match(/^([a-z_]+)[.:[]/) || [])[1];
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
  const fields = ['urls', 'schema', 'prompt', 'options', 'name', 'tags'];
  if (error.code === 'INVALID_INPUT' && fields.includes(prefix)) {
    return [prefix, null];
  }
  return ['form', null];
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

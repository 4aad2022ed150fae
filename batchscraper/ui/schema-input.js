// The submit form's schema input: JSON Schema text (checked as it is typed), field rows or a
// built-in profile.

import { h, replace } from './dom.js';

// batchscraper.profiles.profile_names(); the API answers INVALID_SCHEMA for any other name
export const PROFILES = ['article', 'event', 'faq', 'job_posting', 'product', 'recipe'];
const FIELD_TYPES = ['string', 'number', 'integer', 'boolean', 'date', 'datetime', 'url', 'email', 'array'];
const EXAMPLE_SCHEMA = {
  type: 'object',
  properties: { name: { type: 'string' }, price: { type: 'number' } },
  required: ['name'],
};

export class FormError extends Error {
  constructor(fieldName, message) {
    super(message);
    this.field = fieldName;
  }
}

// The schema: JSON Schema text, field rows or a profile.
export function schemaSection(errors) {
  const modes = ['json', 'fields', 'profile'];
  const modeLabels = { json: 'JSON Schema', fields: 'Field list', profile: 'Profile' };
  const modeRadios = modes.map((mode) => h('input', {
    type: 'radio', name: 'schema-mode', id: `schema-mode-${mode}`, value: mode, checked: mode === 'json',
  }));
  const json = jsonSchemaPane();
  const fields = fieldRowsPane();
  const profile = h('select', { id: 'schema-profile' },
    PROFILES.map((name) => h('option', { value: name }, name)));
  const panes = {
    json: json.element,
    fields: fields.element,
    profile: h('div', { class: 'pane', hidden: true }, h('label', {}, 'profile:', profile),
      h('p', { class: 'hint' }, 'A built-in schema with schema.org field names.')),
  };
  const mode = () => modeRadios.find((radio) => radio.checked).value;
  for (const radio of modeRadios) {
    radio.addEventListener('change', () => {
      for (const [name, pane] of Object.entries(panes)) pane.hidden = name !== mode();
    });
  }
  return {
    element: h('fieldset', {}, h('legend', {}, 'Schema'),
      h('div', { class: 'row' }, modes.map((m, i) =>
        h('label', { class: 'inline' }, modeRadios[i], ` ${modeLabels[m]}`))),
      panes.json, panes.fields, panes.profile,
      errors.slot('schema')),
    inputId: () => ({ json: 'schema-json', fields: 'field-rows', profile: 'schema-profile' }[mode()]),
    value() {
      if (mode() === 'profile') return `profile:${profile.value}`;
      if (mode() === 'fields') return fields.value();
      return json.value();
    },
  };
}

function jsonSchemaPane() {
  const text = h('textarea', { id: 'schema-json', rows: 10, spellcheck: 'false', class: 'mono' });
  text.value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
  const status = h('p', { id: 'schema-json-status', class: 'hint' });
  const check = () => {
    const result = parseSchemaText(text.value);
    status.className = `hint ${result.error ? 'bad' : 'good'}`;
    replace(status, result.error || 'Valid JSON.');
    text.setAttribute('aria-invalid', result.error ? 'true' : 'false');
    return result;
  };
  text.addEventListener('input', check);
  check();
  return {
    element: h('div', { class: 'pane' }, text, status),
    value() {
      const result = check();
      if (result.error) throw new FormError('schema', result.error);
      return result.value;
    },
  };
}

function fieldRowsPane() {
  const rows = h('tbody', { id: 'field-rows' });
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
    rows.append(row);
  };
  addField('name', 'string', true);
  addField('price', 'number');
  return {
    element: h('div', { class: 'pane', hidden: true },
      h('table', { class: 'compact' },
        h('thead', {}, h('tr', {},
          ['Field', 'Type', 'Required', 'Description', ''].map((t) => h('th', {}, t)))),
        rows),
      h('button', { type: 'button', onclick: () => addField() }, 'Add field')),
    value: () => [...rows.rows].map((row) => {
      const entry = {
        field: row.querySelector('.field-name').value.trim(),
        type: row.querySelector('.field-type').value,
      };
      if (row.querySelector('.field-required').checked) entry.required = true;
      const description = row.querySelector('.field-description').value.trim();
      if (description) entry.description = description;
      return entry;
    }),
  };
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

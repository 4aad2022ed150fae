// The error line under each field of a form, by name ('form' for what belongs to no field).

import { h, replace } from './dom.js';

export class FieldErrors {
  // `inputId(name)`: the id of the input a field's error marks invalid.
  constructor(inputId = (name) => name) {
    this.slots = {};
    this.inputId = inputId;
  }

  // `prefix` keeps two forms' slot ids apart (error-<prefix><name>).
  slot(name, kind = 'field-error', prefix = '') {
    this.slots[name] = h('p', { class: kind, id: `error-${prefix}${name}`, role: 'alert', hidden: true });
    return this.slots[name];
  }

  show(name, message, details) {
    const target = this.slots[name] || this.slots.form;
    replace(target, message, details);
    target.hidden = false;
    const input = document.getElementById(this.inputId(name));
    if (input) input.setAttribute('aria-invalid', 'true');
    target.scrollIntoView({ block: 'center' });
  }

  clear(name) {
    this.slots[name].hidden = true;
    replace(this.slots[name]);
  }

  clearAll(form) {
    for (const name of Object.keys(this.slots)) this.clear(name);
    for (const input of form.querySelectorAll('[aria-invalid="true"]')) input.removeAttribute('aria-invalid');
  }
}

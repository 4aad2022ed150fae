// The dashboard: a hash router over its views, the API key prompt, shared dialogs.

import { Api } from './api.js';
import { renderBatch } from './batch.js';
import { replace } from './dom.js';
import { renderList } from './list.js';
import { renderSchedule } from './schedule.js';
import { renderSchedules } from './schedules.js';
import { renderSubmit } from './submit.js';

const api = new Api(new URL('../', document.baseURI));
const view = document.getElementById('view');
const notice = document.getElementById('notice');
const keyDialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
let current = null;
let carried = null; // a notice for the view being navigated to

const ROUTES = [
  [/^\/$/, renderList, 'list'],
  [/^\/new$/, renderSubmit, 'new'],
  [/^\/batches\/(b_[0-9a-f]{32})$/, renderBatch, 'list'],
  [/^\/schedules$/, renderSchedules, 'schedules'],
  [/^\/schedules\/(s_[0-9a-f]{32})$/, renderSchedule, 'schedules'],
];

// What a view gets: the API, its route, and timers/fetches that stop when it is left.
class ViewContext {
  constructor(params, query) {
    this.api = api;
    this.params = params;
    this.query = query;
    this.timers = new Set();
    this.closed = false;
    this.loaded = false;
  }

  every(ms, work) {
    const run = async () => {
      if (this.closed) return;
      try {
        if (!keyDialog.open) await work(); // no calls while the user types a key
      } catch (error) {
        this.fail(error);
      }
      if (!this.closed) this.timers.add(setTimeout(run, ms));
    };
    this.timers.add(setTimeout(run, ms));
  }

  close() {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
  }

  // `notice`: text the next view shows (the notice line is cleared on every route)
  navigate(hash, notice = null) {
    carried = notice;
    location.hash = hash;
  }

  notify(text, kind = 'info') {
    showNotice(text, kind);
  }

  fail(error) {
    if (this.closed || error.status === 401) return; // the key prompt is open
    showNotice(error.message || String(error), 'error');
  }

  confirm(text) {
    return confirmDialog(text);
  }
}

function showNotice(text, kind) {
  notice.textContent = text;
  notice.className = `notice notice-${kind}`;
  notice.hidden = !text;
}

async function route() {
  if (current) current.close();
  showNotice(carried || '', 'info');
  carried = null;
  const [path, search = ''] = (location.hash.slice(1) || '/').split('?');
  const match = ROUTES.find(([pattern]) => pattern.test(path));
  const [pattern, render, nav] = match || ROUTES[0];
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === nav);
  }
  current = new ViewContext(match ? path.match(pattern).slice(1) : [], new URLSearchParams(search));
  const context = current;
  replace(view);
  try {
    await render(view, context);
    context.loaded = true;
  } catch (error) {
    context.fail(error);
  }
}

function askForKey(reason) {
  document.getElementById('key-reason').textContent = reason;
  if (keyDialog.open) return;
  keyInput.value = '';
  keyDialog.showModal();
  keyInput.focus();
}

// A view that loaded keeps its state (a half-filled form, filters) and carries on with the
// new key; one that could not load is loaded again.
function keyChanged() {
  if (current && current.loaded) {
    showNotice('', 'info');
    return;
  }
  route();
}

function confirmDialog(text) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
  });
}

document.getElementById('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  api.setKey(key);
  keyInput.value = '';
  keyDialog.close();
  keyChanged();
});
document.getElementById('key-forget').addEventListener('click', () => {
  api.forgetKey();
  keyInput.value = '';
  keyDialog.close();
  route();
});
document.getElementById('key-button').addEventListener('click', () => {
  askForKey(api.key ? 'A key is set for this tab; enter another to replace it.' : 'Enter your API key.');
});
window.addEventListener('api-unauthorized', (event) => {
  askForKey(`The API refused the request: ${event.detail}`);
});
window.addEventListener('hashchange', route);
route();

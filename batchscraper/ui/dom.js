// Building the page from data without ever parsing data as markup: strings only
// become text nodes, attribute values or properties (no innerHTML anywhere).

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// An http(s) link to a page the user listed; anything else (javascript:, data:) is not a link.
export function externalLink(url, label = url) {
  let parsed = null;
  try {
    parsed = new URL(url);
  } catch {
    parsed = null;
  }
  if (!parsed || !['http:', 'https:'].includes(parsed.protocol)) return h('span', {}, label);
  return h('a', { href: parsed.href, target: '_blank', rel: 'noopener noreferrer' }, label);
}

// Only the statuses the API knows become class names.
const STATUSES = ['pending', 'leased', 'running', 'completed', 'partial', 'failed', 'cancelled'];

export function badge(status) {
  const known = STATUSES.includes(status) ? status : 'unknown';
  return h('span', { class: `badge badge-${known}`, dataset: { status: String(status) } },
    String(status));
}

// A stacked bar: completed, failed, cancelled, running (in flight) and leased parts of the total.
export function progressBar(counters, progress) {
  const total = counters.total || 0;
  const bar = h('div', {
    class: 'bar',
    role: 'progressbar',
    'aria-valuemin': 0,
    'aria-valuemax': total,
    'aria-valuenow': progress.done,
    'aria-label': `${progress.done} of ${total} finished`,
    dataset: { done: progress.done, total },
  });
  for (const part of ['completed', 'failed', 'cancelled', 'running', 'leased']) {
    const count = counters[part] || 0;
    if (!count || !total) continue;
    const segment = h('span', { class: `seg seg-${part}`, title: `${count} ${part}` });
    segment.style.width = `${(100 * count) / total}%`; // CSSOM, allowed by the CSP
    bar.append(segment);
  }
  return bar;
}

export function field(label, value) {
  return [h('dt', {}, label), h('dd', {}, value === undefined || value === null ? '–' : value)];
}

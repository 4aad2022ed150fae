// A batch's per-domain health, worst first: what the circuit breaker counted for each of the
// busiest domains (every attempt, retries included), and the batch's failed items there.

import { h, replace } from './dom.js';
import { count, duration, percent } from './format.js';

// The breaker's states, least severe first; only these become class names.
const BREAKER_STATES = ['closed', 'slowed', 'open'];
const TOP_CODES = 3;
const COLUMNS = ['Domain', 'Breaker', 'Requests', 'Errors', 'Error rate', 'Delay', 'Failed items'];

// `domains`: the batch's `domains` from the API; `failures`: the failed items' records as last
// read (null: not read yet); `failedNow`: how many items the batch counts as failed now.
export function drawDomains(section, domains, failures, failedNow) {
  section.hidden = !domains.length;
  if (!domains.length) return;
  const failed = failuresByHost(failures || []);
  const rows = domains.map((entry) => {
    const codes = failed.get(entry.domain) || new Map();
    return { ...entry, rate: errorRate(entry), codes, failed: failures ? sum(codes.values()) : null };
  });
  rows.sort(worstFirst);
  replace(section,
    h('h2', {}, 'Domains'),
    h('p', { class: 'hint' },
      'The busiest domains. Requests and errors count every attempt, retries included; errors '
      + 'are what the circuit breaker counts (by default 408, 429, 5xx and download failures). '
      + 'Failed items: this batch’s items that failed on the domain, by error code'
      + `${readNote(failures, failedNow)}.`),
    h('table', { class: 'compact', id: 'domains-table' },
      h('thead', {}, h('tr', {}, COLUMNS.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.map(domainRow))));
}

function domainRow(row) {
  const known = BREAKER_STATES.includes(row.breaker) ? row.breaker : 'unknown';
  return h('tr', { dataset: { domain: String(row.domain), breaker: known } },
    h('td', { class: 'mono clip', title: String(row.domain) }, String(row.domain)),
    h('td', {}, h('span', { class: `breaker breaker-${known}` }, String(row.breaker ?? '–'))),
    h('td', { class: 'num' }, count(row.requests)),
    h('td', { class: 'num' }, count(row.errors)),
    h('td', { class: 'num' }, percent(row.rate)),
    h('td', { class: 'num' }, typeof row.delay === 'number' ? duration(row.delay * 1000) : '–'),
    h('td', {}, failedCell(row.failed, row.codes)));
}

function readNote(failures, failedNow) {
  if (!failures) return ' (being counted)';
  if (failures.length === failedNow) return '';
  return ` (as of ${count(failures.length)} of the ${count(failedNow)} failed items)`;
}

function failedCell(total, codes) {
  if (total === null) return h('span', { class: 'failed-count' }, '–');
  const top = [...codes].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, TOP_CODES);
  return [
    h('span', { class: 'failed-count' }, count(total)),
    top.length
      ? h('span', { class: 'muted mono' }, ` ${top.map(([code, n]) => `${code} ${n}`).join(' · ')}`)
      : null,
  ];
}

function worstFirst(a, b) {
  return severity(b.breaker) - severity(a.breaker)
    || (b.rate ?? 0) - (a.rate ?? 0)
    || (b.failed ?? 0) - (a.failed ?? 0)
    || (b.requests || 0) - (a.requests || 0)
    || String(a.domain).localeCompare(String(b.domain));
}

function severity(state) {
  return BREAKER_STATES.indexOf(state);
}

function sum(numbers) {
  let total = 0;
  for (const n of numbers) total += n;
  return total;
}

function errorRate(entry) {
  if (typeof entry.error_rate === 'number') return entry.error_rate;
  return entry.requests ? entry.errors / entry.requests : null;
}

// Failed items by the domain the breaker files their requests under (Scrapy's download slot:
// the URL's host name, IPv6 without brackets), each a map of error code to count.
function failuresByHost(failures) {
  const byHost = new Map();
  for (const item of failures) {
    const host = hostOf(item.url);
    if (!byHost.has(host)) byHost.set(host, new Map());
    const codes = byHost.get(host);
    const code = item.error?.code || 'UNKNOWN';
    codes.set(code, (codes.get(code) || 0) + 1);
  }
  return byHost;
}

function hostOf(url) {
  try {
    return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return '';
  }
}

// Numbers, times and rates as people read them.

export const FINAL_STATUSES = ['completed', 'partial', 'failed', 'cancelled'];

export function time(iso) {
  return iso ? new Date(iso) : null;
}

export function dateTime(iso) {
  const when = time(iso);
  return when ? when.toLocaleString() : '–';
}

// A moment as the wall clock of `timeZone` shows it: "2025-03-30 03:00" (in a zone this
// browser does not know: UTC, marked so).
export function zonedTime(iso, timeZone) {
  const when = time(iso);
  if (!when) return '–';
  try {
    return wallClock(when, timeZone);
  } catch {
    return `${wallClock(when, 'UTC')} UTC`;
  }
}

function wallClock(when, timeZone) {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone, year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  });
  const part = Object.fromEntries(format.formatToParts(when).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}`;
}

// How long until a moment: "in 5 h 3 min" (a moment past: "due").
export function until(iso, now = Date.now()) {
  const when = time(iso);
  if (!when) return '';
  const ms = when.getTime() - now;
  return ms > 0 ? `in ${duration(ms, true)}` : 'due';
}

export function age(iso, now = Date.now()) {
  const when = time(iso);
  return when ? `${duration(now - when.getTime(), true)} ago` : '–';
}

export function duration(ms, coarse = false) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 1 && !coarse) return `${Math.round(ms)} ms`;
  if (seconds < 60) return coarse ? `${Math.floor(seconds)} s` : `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

export function count(value) {
  return typeof value === 'number' ? value.toLocaleString() : '–';
}

// A share in 0..1 as a percentage, to one decimal at most.
export function percent(ratio) {
  return typeof ratio === 'number' ? `${Math.round(1000 * ratio) / 10}%` : '–';
}

export function usd(value) {
  if (typeof value !== 'number') return '–';
  if (value === 0) return '$0';
  return `$${value < 0.01 ? value.toFixed(4) : value.toFixed(2)}`;
}

export function tokens(item) {
  const used = item.tokens;
  if (!used) return '–';
  return `${count(used.in ?? 0)} in / ${count(used.out ?? 0)} out`;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

// Pages per minute from the progress seen over the last minute of polls, or since the
// start when there are too few samples; ETA from that rate.
export class Pace {
  constructor(windowMs = 60_000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  add(done, at = Date.now()) {
    const last = this.samples[this.samples.length - 1];
    if (last && done < last.done) this.samples = []; // a retry moved items back to pending
    this.samples.push({ done, at });
    while (this.samples.length > 2 && at - this.samples[0].at > this.windowMs) this.samples.shift();
  }

  perMinute(batch, now = Date.now()) {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first && last && last.done > first.done && last.at > first.at) {
      return (60_000 * (last.done - first.done)) / (last.at - first.at);
    }
    const started = time(batch.started_at);
    if (!started || !batch.progress.done) return null;
    const end = time(batch.finished_at)?.getTime() ?? now;
    return end > started.getTime() ? (60_000 * batch.progress.done) / (end - started.getTime()) : null;
  }

  eta(batch, now = Date.now()) {
    if (FINAL_STATUSES.includes(batch.status)) return null;
    const rate = this.perMinute(batch, now);
    const remaining = batch.progress.total - batch.progress.done;
    return rate ? (60_000 * remaining) / rate : null;
  }
}

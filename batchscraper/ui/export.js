// Export a batch's records (JSONL as the API streams them, or CSV) as a file download.
// The stream needs the key header, so it is read here and handed over as a blob.

const FIXED_COLUMNS = ['index', 'url', 'status', 'http_status', 'render_mode', 'error_code', 'error_message'];
const FORMULA_START = /^[=+\-@\t\r]/; // spreadsheets would run these as formulas

// `columns`: the schema's field paths (a.b), the CSV's record columns in their order
export async function exportRecords(api, batchId, format, columns) {
  const records = [];
  for await (const record of api.records(`batches/${batchId}/items`)) records.push(record);
  const text = format === 'csv' ? toCsv(records, columns) : records.map((r) => `${JSON.stringify(r)}\n`).join('');
  const type = format === 'csv' ? 'text/csv' : 'application/x-ndjson';
  download(new Blob([text], { type }), `${batchId}.${format}`);
  return records.length;
}

// One row per record: a list page's records each get a row, numbered in a `record` column
// (only when some page has a list); one `data.<path>` column per schema field (an object
// without properties in the schema: as JSON), then the fields outside the schema, flattened.
function toCsv(items, columns) {
  const inSchema = (path) => columns.some((column) => path === column || path.startsWith(`${column}.`));
  const extra = [];
  const rows = [];
  let lists = false;
  for (const item of items) {
    const many = Array.isArray(item.data);
    lists ||= many;
    (many ? item.data : [item.data]).forEach((record, number) => {
      const flat = flatten(record);
      for (const path of Object.keys(flat)) if (!inSchema(path) && !extra.includes(path)) extra.push(path);
      rows.push({ item, record, flat, number: many ? number : '' });
    });
  }
  const header = [...FIXED_COLUMNS, ...(lists ? ['record'] : []),
    ...[...columns, ...extra].map((path) => `data.${path}`)];
  const lines = [header.map(cell).join(',')];
  for (const { item, record, flat, number } of rows) {
    lines.push([
      item.index, item.url, item.status, item.http_status, item.render_mode,
      item.error?.code, item.error?.message, ...(lists ? [number] : []),
      ...columns.map((column) => valueAt(record, column)), ...extra.map((path) => flat[path]),
    ].map(cell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

// A record's values by a.b path; arrays (and values that are not objects) are leaves.
function flatten(record, prefix = '', into = {}) {
  if (!isObject(record)) return into;
  for (const [name, value] of Object.entries(record)) {
    if (isObject(value)) flatten(value, `${prefix}${name}.`, into);
    else into[prefix + name] = value;
  }
  return into;
}

function valueAt(record, path) {
  let value = record;
  for (const key of path.split('.')) {
    if (!isObject(value)) return undefined;
    value = value[key];
  }
  return value;
}

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function cell(value) {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (typeof value === 'string' && FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

// Export a batch's records (JSONL as the API streams them, or CSV) as a file download.
// The stream needs the key header, so it is read here and handed over as a blob.

const FIXED_COLUMNS = ['index', 'url', 'status', 'http_status', 'render_mode', 'error_code', 'error_message'];
const FORMULA_START = /^[=+\-@\t\r]/; // spreadsheets would run these as formulas

export async function exportRecords(api, batchId, format) {
  const records = [];
  for await (const record of api.records(`batches/${batchId}/items`)) records.push(record);
  const text = format === 'csv' ? toCsv(records) : records.map((r) => `${JSON.stringify(r)}\n`).join('');
  const type = format === 'csv' ? 'text/csv' : 'application/x-ndjson';
  download(new Blob([text], { type }), `${batchId}.${format}`);
  return records.length;
}

function toCsv(records) {
  const rows = [];
  const fields = [];
  for (const record of records) {
    const many = Array.isArray(record.data);
    const datas = many ? record.data : [record.data];
    datas.forEach((data, number) => {
      const values = data && typeof data === 'object' ? data : {};
      for (const name of Object.keys(values)) if (!fields.includes(name)) fields.push(name);
      rows.push({ record, data: values, number: many ? number : '' });
    });
  }
  const header = [...FIXED_COLUMNS, 'record', ...fields.map((name) => `data.${name}`)];
  const lines = [header.map(cell).join(',')];
  for (const { record, data, number } of rows) {
    lines.push([
      record.index, record.url, record.status, record.http_status, record.render_mode,
      record.error?.code, record.error?.message, number,
      ...fields.map((name) => data[name]),
    ].map(cell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
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

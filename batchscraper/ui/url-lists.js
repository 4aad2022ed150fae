// URL lists as the form takes them: typed text or a file, read the way the command line reads
// @file (by its extension).

// The text box: a JSON array, or one URL per line with # comments.
export function textEntries(text) {
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
export function fileUrlEntries(name, text) {
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

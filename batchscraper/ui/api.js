// The batch HTTP API, called with the key the user typed (a header, never a cookie).

const KEY_STORAGE = 'batchscraper.apiKey';

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
    this.details = details;
  }
}

export class Api {
  // `root` is where /batches lives: the parent of /ui/, behind any proxy prefix.
  constructor(root) {
    this.root = root;
  }

  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  }

  setKey(key) {
    sessionStorage.setItem(KEY_STORAGE, key);
  }

  forgetKey() {
    sessionStorage.removeItem(KEY_STORAGE);
  }

  url(path, query = {}) {
    const url = new URL(path, this.root);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') {
        url.searchParams.set(name, String(value));
      }
    }
    return url.href;
  }

  async request(method, path, { query, body, accept = 'application/json', headers: extra } = {}) {
    const headers = { ...extra, Accept: accept };
    if (this.key) headers['X-API-Key'] = this.key;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(this.url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
    });
    if (!response.ok) throw await apiError(response);
    return response;
  }

  async json(method, path, options) {
    return (await this.request(method, path, options)).json();
  }

  async blob(path) {
    return (await this.request('GET', path, { accept: 'image/png' })).blob();
  }

  // Records of an NDJSON stream, as they arrive.
  async *records(path, query = {}) {
    const response = await this.request('GET', path, {
      query: { ...query, format: 'ndjson' },
      accept: 'application/x-ndjson',
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) if (line.trim()) yield JSON.parse(line);
    }
    if (buffered.trim()) yield JSON.parse(buffered);
  }
}

async function apiError(response) {
  let error = null;
  try {
    error = (await response.json()).error;
  } catch {
    error = null;
  }
  const failure = error && typeof error.code === 'string'
    ? new ApiError(response.status, error.code, String(error.message), error.details ?? null)
    : new ApiError(response.status, `HTTP_${response.status}`, response.statusText || 'error');
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent('api-unauthorized', { detail: failure.detail }));
  }
  return failure;
}

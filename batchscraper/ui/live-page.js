// A page of a batch's items kept up to date with little traffic: read once, then, when the
// batch's counters moved, only the items that changed since the last read (`updated_after`).

const MAX_CHANGES = 500; // more changed items than this: the page is read again

export class LivePage {
  // `fields`: the item fields the page shows (the API leaves the rest out)
  constructor(api, path, fields) {
    this.api = api;
    this.path = `${path}/items`;
    this.fields = fields;
    this.query = null;
    this.items = [];
    this.total = 0;
    this.cursor = null; // the last answer's as_of
    this.generation = 0; // a newer load wins over a sync still under way
  }

  // Read the page for `query` ({ page, limit, status, error_code, sort, match }).
  async load(query) {
    this.query = query;
    const generation = ++this.generation;
    const answer = await this.api.json('GET', this.path, { query: { ...query, fields: this.fields } });
    if (generation !== this.generation) return false;
    this.items = answer.items;
    this.total = answer.pagination.total;
    this.cursor = answer.as_of;
    return true;
  }

  // Bring the page up to date; true when it changed. A page in input order takes the changed
  // items in place; a filtered or sorted page is read again (items move in and out of it).
  async sync() {
    const q = this.query;
    if (q.status || q.error_code || q.sort || q.match || !this.cursor) return this.load(q);
    const generation = this.generation;
    const answer = await this.api.json('GET', this.path, {
      query: { updated_after: this.cursor, fields: this.fields, limit: MAX_CHANGES },
    });
    if (generation !== this.generation) return false;
    if (answer.pagination.total > answer.items.length) return this.load(q);
    this.cursor = answer.as_of;
    const first = (q.page - 1) * q.limit;
    let changed = false;
    for (const item of answer.items) {
      const at = item.index - first;
      if (at < 0 || at >= this.items.length) continue;
      if (JSON.stringify(this.items[at]) === JSON.stringify(item)) continue;
      this.items[at] = item;
      changed = true;
    }
    return changed;
  }
}

// Every trial of the job in one table: sortable by any column (click its heading), filtered
// by state, paged (`PAGE_SIZE` rows), and a box per row that pins the trial's training curve
// to the curves chart. Sorting, filter and page survive the live updates; only the visible
// page is drawn, so a job of thousands of trials costs one sort per update.

import { h, replace } from "./dom.js";
import { loss, num } from "./format.js";

const PAGE_SIZE = 25;
const STATES = ["all", "complete", "diverged", "pruned", "failed", "running", "waiting"];

const COLUMNS = [
  { key: "number", label: "#", value: (t) => t.number },
  { key: "state", label: "state", value: (t) => t.state },
  { key: "value", label: "loss", value: (t) => (Number.isFinite(t.value) ? t.value : null), format: loss },
  { key: "diverged_at_step", label: "diverged at", value: (t) => t.diverged_at_step, format: (v) => (v === null ? "" : String(v)) },
  { key: "wall_s", label: "wall s", value: (t) => t.wall_s, format: (v) => num(v, 3) },
  { key: "source", label: "source", value: (t) => t.source },
];

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // missing values last, whichever the direction
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}

export class TrialTable {
  /** `onPin(number, pinned)`: the user ticked or cleared a row's curve box. */
  constructor(root, { onPin }) {
    this.root = root;
    this.onPin = onPin;
    this.trials = [];
    this.tuned = [];
    this.pinned = new Set();
    this.sort = { key: "value", dir: 1 };
    this.filter = "all";
    this.page = 0;

    this.select = h("select", { id: "trial-filter", on: { change: () => { this.filter = this.select.value; this.page = 0; this.draw(); } } },
      STATES.map((st) => h("option", { value: st }, st)));
    this.prev = h("button", { type: "button", class: "ghost", id: "trials-prev", on: { click: () => this.turn(-1) } }, "‹ Previous");
    this.next = h("button", { type: "button", class: "ghost", id: "trials-next", on: { click: () => this.turn(1) } }, "Next ›");
    this.where = h("span", { class: "muted small", id: "trials-page", role: "status", "aria-live": "polite" });
    this.table = h("div", { class: "table-slot" });
    replace(
      root,
      h("div", { class: "table-tools" },
        h("label", { for: "trial-filter", class: "small" }, "Show "), this.select,
        h("span", { class: "pager" }, this.prev, this.where, this.next)),
      this.table,
    );
  }

  update(trials, tuned, pinned) {
    this.trials = trials;
    this.tuned = tuned;
    this.pinned = pinned;
    this.draw();
  }

  turn(delta) {
    this.page += delta;
    this.draw();
  }

  columns() {
    const params = this.tuned.map((name) => ({ key: `p:${name}`, label: name, value: (t) => t.params[name] ?? null, format: (v) => num(v) }));
    return [COLUMNS[0], COLUMNS[1], ...params, ...COLUMNS.slice(2)];
  }

  draw() {
    const cols = this.columns();
    const col = cols.find((c) => c.key === this.sort.key) || cols[0];
    const shown = this.filter === "all" ? this.trials.slice() : this.trials.filter((t) => t.state === this.filter);
    const dir = this.sort.dir;
    shown.sort((a, b) => {
      const va = col.value(a);
      const vb = col.value(b);
      if (va === null || va === undefined || vb === null || vb === undefined) return compare(va, vb) || a.number - b.number;
      return dir * compare(va, vb) || a.number - b.number;
    });
    const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
    this.page = Math.min(Math.max(0, this.page), pages - 1);
    const rows = shown.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE);
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
    this.where.textContent = shown.length
      ? `${this.page * PAGE_SIZE + 1}–${this.page * PAGE_SIZE + rows.length} of ${shown.length} · page ${this.page + 1} of ${pages}`
      : "no trial";

    const head = cols.map((c) => {
      const active = c.key === col.key;
      return h("th", { scope: "col", "aria-sort": active ? (dir > 0 ? "ascending" : "descending") : "none" },
        h("button", { type: "button", class: "sort", dataset: { sort: c.key }, on: { click: () => this.sortBy(c.key) } },
          c.label, active ? (dir > 0 ? " ▲" : " ▼") : ""));
    });
    const body = rows.map((t) => {
      const box = h("input", {
        type: "checkbox",
        "aria-label": `Show the training curve of trial ${t.number}`,
        checked: this.pinned.has(t.number),
        on: { change: (e) => this.onPin(t.number, e.target.checked) },
      });
      return h("tr", { class: `row-${t.state}`, dataset: { trial: t.number } },
        h("td", { class: "pin" }, box),
        cols.map((c) => {
          const v = c.value(t);
          return h("td", { class: `col-${c.key.replace(":", "-")}` }, c.format ? c.format(v) : String(v ?? ""));
        }),
        h("td", { class: "error-cell" }, t.error || ""));
    });
    replace(
      this.table,
      h("table", { class: "trials all-trials" },
        h("caption", { class: "visually-hidden" }, "All trials of the job; click a column heading to sort"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "curve"), head, h("th", { scope: "col" }, "error"))),
        h("tbody", {}, body)),
    );
  }

  sortBy(key) {
    this.sort = this.sort.key === key ? { key, dir: -this.sort.dir } : { key, dir: 1 };
    this.page = 0;
    this.draw();
    this.table.querySelector(`button[data-sort="${key}"]`)?.focus();
  }
}

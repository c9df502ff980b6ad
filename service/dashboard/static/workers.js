// The workers serving this tenant (GET /workers): when each was last seen, the trials it
// holds now and has finished, and its compile and train seconds. A worker not seen for
// longer than a lease lasts holds nothing any more: it is shown as gone.

import { h, replace } from "./dom.js";
import { duration, num, plural } from "./format.js";

export function renderWorkers(panel, page, now = Date.now()) {
  const title = h("h2", { id: "workers-title" }, "Workers");
  if (!page.workers.length) {
    replace(panel, title, h("p", { class: "muted" }, "No worker has asked for trials with this tenant's keys yet."));
    return;
  }
  const ttl = page.lease_ttl_s * 1000;
  const rows = page.workers.map((w) => {
    const ago = Math.max(0, now - Date.parse(w.last_seen_at));
    const gone = ago > ttl;
    const versions = w.versions ? `jax ${w.versions.jax}, optax ${w.versions.optax}` : "–";
    return h("tr", { class: gone ? "gone" : null, dataset: { worker: w.worker_id } },
      h("th", { scope: "row", class: "worker-id" }, w.worker_id),
      h("td", {}, gone ? `${duration(ago / 1000)} ago (gone)` : `${duration(ago / 1000)} ago`),
      h("td", {}, String(w.trials_held)),
      h("td", {}, String(w.trials_finished)),
      h("td", {}, String(w.trials_failed)),
      h("td", {}, num(w.compile_s, 3)),
      h("td", {}, num(w.train_s, 3)),
      h("td", { class: "muted" }, versions));
  });
  const active = page.workers.filter((w) => now - Date.parse(w.last_seen_at) <= ttl).length;
  replace(
    panel,
    title,
    h("p", { class: "muted small" },
      `${plural(active, "worker")} active of ${page.total} seen with this tenant's keys`,
      page.total > page.workers.length ? ` (the ${page.workers.length} seen last are listed)` : ""),
    h("div", { class: "table-slot" },
      h("table", { class: "trials workers" },
        h("caption", { class: "visually-hidden" }, "Workers serving this tenant"),
        h("thead", {}, h("tr", {},
          ["worker", "last seen", "holds", "finished", "failed", "compile s", "train s", "versions"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows))),
  );
}

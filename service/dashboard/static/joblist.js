// The tenant's jobs in the sidebar. Items are kept per job id and updated in place, so a
// refresh never steals keyboard focus from the link the user is on.

import { h, replace } from "./dom.js";
import { loss } from "./format.js";
import { progressBar, statusBadge } from "./widgets.js";

export class JobList {
  constructor(list, empty, total) {
    this.list = list;
    this.empty = empty;
    this.total = total;
    this.items = new Map(); // job id -> {li, link, signature}
    this.selected = null;
  }

  render(page) {
    const seen = new Set();
    const order = [];
    for (const job of page.jobs) {
      seen.add(job.id);
      let item = this.items.get(job.id);
      if (!item) {
        const link = h("a", { class: "job-link", href: `#/jobs/${encodeURIComponent(job.id)}`, dataset: { jobId: job.id } });
        item = { li: h("li", {}, link), link, signature: "" };
        this.items.set(job.id, item);
      }
      const signature = JSON.stringify([job.name, job.status, job.progress, job.best_value]);
      if (signature !== item.signature) {
        item.signature = signature;
        fillLink(item.link, job);
      }
      order.push(item.li);
    }
    for (const [id, item] of this.items) {
      if (!seen.has(id)) {
        item.li.remove();
        this.items.delete(id);
      }
    }
    // Re-append in order (moves nodes; focus stays on a moved, still-connected link).
    order.forEach((li, i) => {
      if (this.list.children[i] !== li) this.list.insertBefore(li, this.list.children[i] || null);
    });
    this.empty.hidden = page.jobs.length > 0;
    this.total.textContent = page.total > page.jobs.length ? `${page.jobs.length} of ${page.total}` : String(page.total);
    this.select(this.selected);
  }

  select(jobId) {
    this.selected = jobId;
    for (const [id, item] of this.items) {
      if (id === jobId) item.link.setAttribute("aria-current", "page");
      else item.link.removeAttribute("aria-current");
    }
  }
}

function fillLink(link, job) {
  const p = job.progress;
  replace(
    link,
    h("span", { class: "job-line" }, h("span", { class: "job-name" }, job.name), statusBadge(job.status)),
    progressBar(p),
    h(
      "span",
      { class: "job-meta" },
      `${p.finished}/${p.n_trials} trials`,
      p.diverged ? ` · ${p.diverged} diverged` : "",
      ` · best ${loss(job.best_value)}`,
    ),
  );
}

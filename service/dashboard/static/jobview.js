// One job, followed live: header and cancel button, progress counts, the two charts, the
// recommendation panel and the best trials. Built once per selected job, then updated.

import { baselineLegend } from "./baselines.js";
import { h, replace, s } from "./dom.js";
import { duration, loss, num, time } from "./format.js";
import { bestSoFar, lossVsLearningRate } from "./plots.js";
import { rampBar } from "./chart.js";
import { renderRecommendation } from "./recommendation.js";
import { progressBar, statusBadge } from "./widgets.js";

const COUNTS = [
  ["complete", "complete"],
  ["diverged", "diverged"],
  ["pruned", "pruned"],
  ["failed", "failed"],
  ["running", "running"],
  ["waiting", "waiting"],
];
const ACTIVE = new Set(["queued", "running"]);
const BEST_ROWS = 8;

export class JobView {
  constructor(root, { onCancel }) {
    this.root = root;
    this.onCancel = onCancel;
    this.job = null;
    this.trials = [];
    this.rec = null;
    this.confirmTimer = null;

    this.title = h("h1", { class: "job-title", id: "job-title" });
    this.badge = h("span");
    this.sub = h("p", { class: "job-sub muted" });
    // Why a job failed (its task cannot run, its sampler is missing): the first thing to read.
    this.failure = h("p", { class: "job-failure", role: "alert", dataset: { testid: "job-failure" } });
    this.failure.hidden = true;
    this.cancel = h("button", { type: "button", class: "danger", id: "cancel-job", on: { click: () => this._cancelClicked() } }, "Cancel job");
    this.cancelNote = h("span", { class: "muted small", role: "status", "aria-live": "polite" });
    this.counts = h("dl", { class: "counts" });
    this.bar = h("div", { class: "bar-slot" });
    this.timing = h("p", { class: "muted small timing" });
    this.running = h("p", { class: "muted small running-now" });
    this.scatter = h("figure", { class: "chart-slot", id: "scatter" });
    this.legend = h("div", { class: "legend" });
    this.best = h("figure", { class: "chart-slot", id: "best-curve" });
    this.recPanel = h("section", { class: "card rec-card", id: "rec-panel", "aria-labelledby": "rec-title", "aria-live": "polite" });
    this.table = h("div", { class: "table-slot" });
    renderRecommendation(this.recPanel, { pending: true });
    // Charts are drawn for their container's width: redraw when it changes a lot.
    this.drawnWidth = 0;
    this.resize = new ResizeObserver(() => {
      if (Math.abs(this.scatter.clientWidth - this.drawnWidth) > 40) this._drawCharts();
    });
    this.resize.observe(this.scatter);

    replace(
      root,
      h("header", { class: "job-head" },
        h("div", { class: "job-heading" }, this.title, this.badge),
        h("div", { class: "job-actions" }, this.cancelNote, this.cancel)),
      this.sub,
      this.failure,
      h("section", { class: "card progress-card", "aria-label": "Progress" }, this.counts, this.bar, this.running, this.timing),
      h("div", { class: "panels" },
        h("section", { class: "card chart-card wide", "aria-labelledby": "scatter-title" },
          h("h2", { id: "scatter-title" }, "Final loss against learning rate"), this.scatter, this.legend),
        this.recPanel,
        h("section", { class: "card chart-card", "aria-labelledby": "best-title" },
          h("h2", { id: "best-title" }, "Best loss so far"), this.best),
        h("section", { class: "card", "aria-labelledby": "table-title" },
          h("h2", { id: "table-title" }, "Best trials"), this.table)),
    );
  }

  /** The job (GET /jobs/{id}) was read. */
  setJob(job) {
    this.job = job;
    this.title.textContent = job.name;
    replace(this.badge, statusBadge(job.status));
    const b = job.budget;
    this.sub.textContent = [
      job.id,
      `task ${job.task.name}`,
      `sampler ${job.sampler}`,
      `pruner ${job.pruner}`,
      `${b.steps} steps × ${b.seeds} seeds`,
    ].join(" · ");
    const active = ACTIVE.has(job.status);
    this.failure.hidden = !(job.status === "failed" && job.error);
    this.failure.textContent = this.failure.hidden ? "" : `This job failed: ${job.error}`;
    this.cancel.hidden = !active;
    if (!active) this._resetConfirm();

    const p = job.progress;
    const items = [["finished", `${p.finished} / ${p.n_trials}`], ...COUNTS.map(([k, label]) => [label, String(p[k])]), ["best loss", loss(job.best_value)]];
    replace(
      this.counts,
      items.map(([label, value]) =>
        h("div", { class: ["count", `count-${label.replace(" ", "-")}`] }, h("dt", {}, label), h("dd", { dataset: { count: label.replace(" ", "-") } }, value))),
    );
    replace(this.bar, progressBar(p));
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const ended = Date.parse(job.finished_at || job.cancelled_at || "") || null;
    this.timing.textContent = [
      `created ${time(job.created_at)}`,
      started ? `${ended ? "ran" : "running for"} ${duration(((ended || Date.now()) - started) / 1000)}` : "not started yet",
      job.error ? `error: ${job.error}` : "",
    ].filter(Boolean).join(" · ");
  }

  /** The trials changed (number order). */
  setTrials(trials) {
    this.trials = trials;
    this._drawCharts();
    const running = trials.filter((t) => t.state === "running");
    this.running.textContent = running.length
      ? `Running now: ${running.slice(0, 6).map((t) => `#${t.number}${t.intermediate.length ? ` at step ${t.intermediate[t.intermediate.length - 1].step}` : ""}`).join(", ")}${running.length > 6 ? ", …" : ""}`
      : "";
    this._drawTable();
  }

  /** {rec} or {reason}. */
  setRecommendation(state) {
    this.rec = state.rec || null;
    renderRecommendation(this.recPanel, state);
    this._drawCharts();
  }

  tuned() {
    return Object.entries(this.job?.space || {}).filter(([, v]) => "low" in v).map(([k]) => k);
  }

  /** Stop observing (the view is being thrown away). */
  close() {
    this.resize.disconnect();
  }

  _drawCharts() {
    if (!this.job) return;
    this.drawnWidth = this.scatter.clientWidth;
    const trials = this.trials;
    const tuned = this.tuned();
    const done = trials.filter((t) => t.state === "complete").length;
    const div = trials.filter((t) => t.state === "diverged").length;
    replace(
      this.scatter,
      lossVsLearningRate(trials, {
        space: this.job.space,
        rec: this.rec,
        tuned,
        label: `Final loss against learning rate: ${done} complete trials, ${div} diverged${this.rec ? `; recommended learning rate ${num(this.rec.learning_rate)}` : ""}`,
        width: this.scatter.clientWidth,
      }),
    );
    replace(
      this.best,
      bestSoFar(trials, {
        nTrials: this.job.progress.n_trials,
        label: `Best loss so far over ${done} complete trials: ${loss(this.job.best_value)}`,
        width: this.best.clientWidth,
      }),
    );
    this._drawLegend(tuned);
  }

  _drawLegend(tuned) {
    const eps = this.job.space.eps_root;
    const swatch = (cls, shape) => s("svg", { class: "swatch", viewBox: "-6 -6 12 12", width: 12, height: 12, "aria-hidden": "true" }, s(shape.tag, { class: cls, ...shape.attrs }));
    const items = [
      h("span", { class: "legend-item" }, swatch("pt legend-pt", { tag: "circle", attrs: { r: 4.5 } }), "complete"),
      h("span", { class: "legend-item" }, swatch("pt pruned", { tag: "circle", attrs: { r: 4 } }), "pruned"),
      h("span", { class: "legend-item" }, swatch("div-mark", { tag: "path", attrs: { d: "M-4,-4L4,4M-4,4L4,-4" } }), "diverged (at top; hover for the step)"),
    ];
    if (this.rec) {
      items.push(
        h("span", { class: "legend-item" }, swatch("rec-interval", { tag: "rect", attrs: { x: -5, y: -5, width: 10, height: 10 } }), "lr interval"),
        h("span", { class: "legend-item" }, swatch("rec-lr", { tag: "line", attrs: { x1: 0, x2: 0, y1: -6, y2: 6 } }), "recommended"),
        h("span", { class: "legend-item" }, swatch("rec-edge", { tag: "line", attrs: { x1: 0, x2: 0, y1: -6, y2: 6 } }), "divergence edge"),
      );
    }
    items.push(...baselineLegend(this.rec, swatch));
    if (tuned.includes("eps_root")) {
      items.push(h("span", { class: "legend-item" }, "eps_root ", num(eps.low, 1), " ", rampBar(), " ", num(eps.high, 1)));
    }
    replace(this.legend, items);
  }

  _drawTable() {
    const tuned = this.tuned();
    const best = this.trials.filter((t) => t.state === "complete" && Number.isFinite(t.value)).sort((a, b) => a.value - b.value).slice(0, BEST_ROWS);
    if (!best.length) {
      replace(this.table, h("p", { class: "muted" }, "No complete trial yet."));
      return;
    }
    replace(
      this.table,
      h("table", { class: "trials" },
        h("caption", { class: "visually-hidden" }, "The complete trials with the lowest final loss"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), tuned.map((n) => h("th", { scope: "col" }, n)), h("th", { scope: "col" }, "loss"), h("th", { scope: "col" }, "source"))),
        h("tbody", {}, best.map((t) => h("tr", {},
          h("td", {}, String(t.number)),
          tuned.map((n) => h("td", {}, num(t.params[n]))),
          h("td", {}, loss(t.value)),
          h("td", { class: "muted" }, t.source))))),
    );
  }

  _cancelClicked() {
    if (!this.confirmTimer) {
      this.cancel.textContent = "Confirm cancel";
      this.cancel.classList.add("confirm");
      this.cancelNote.textContent = "Workers stop this job's trials at their next call.";
      this.confirmTimer = setTimeout(() => this._resetConfirm(), 5000);
      return;
    }
    this._resetConfirm();
    this.cancel.disabled = true;
    this.onCancel().finally(() => {
      this.cancel.disabled = false;
    });
  }

  _resetConfirm() {
    clearTimeout(this.confirmTimer);
    this.confirmTimer = null;
    this.cancel.textContent = "Cancel job";
    this.cancel.classList.remove("confirm");
    this.cancelNote.textContent = "";
  }

  showCancelError(message) {
    this.cancelNote.textContent = message;
  }
}

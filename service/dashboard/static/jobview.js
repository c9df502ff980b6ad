// One job, followed live: header and cancel button, the job's failure reason, progress
// counts, the charts (final loss against learning rate, training curves, best loss so far),
// the recommendation, parameter importance, failed trials, the workers, and every trial in
// a sortable, paged table. Built once per selected job, then updated piece by piece.
//
// Layers: `addLayer({series?, scatter?, scatterLosses?, legend?, recommendation?})` lets
// another module draw on this view without changing it: `series(ctx)` extra line series for
// the curves chart (chart.js's lineSeries shape); `scatter(rec, {x, y, box})` nodes under the
// points of the loss-against-learning-rate chart, `scatterLosses(rec)` the losses its range
// must hold, `legend(rec, swatch)` their legend entries; `recommendation(rec)` nodes under
// the answer (baselines.js: the reference optimizers' lines and the comparison line).

import { h, replace } from "./dom.js";
import { duration, loss, num, time } from "./format.js";
import { BestChart, ScatterChart, scatterLegend } from "./plots.js";
import { chooseCurves, lossCurves } from "./curves.js";
import { renderFailures } from "./failures.js";
import { renderImportance } from "./importance.js";
import { renderRecommendation } from "./recommendation.js";
import { TrialTable } from "./trialtable.js";
import { progressBar, statusBadge } from "./widgets.js";
import { renderWorkers } from "./workers.js";

const COUNTS = ["complete", "diverged", "pruned", "failed", "running", "waiting"];
const ACTIVE = new Set(["queued", "running"]);

/** Which loss the final values are: validation where the workers measured it. */
export function lossName(trials) {
  let validated = 0;
  let finished = 0;
  for (const t of trials) {
    if ((t.state === "complete" || t.state === "pruned") && Number.isFinite(t.value)) {
      finished += 1;
      if (t.onValidation) validated += 1;
    }
  }
  if (finished && validated === finished) return "final validation loss";
  if (validated === 0) return "final training loss";
  return "final loss (validation where measured, else training)";
}

function card(id, title, ...body) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...body);
}

export class JobView {
  constructor(root, { onCancel, onPin }) {
    this.root = root;
    this.onCancel = onCancel;
    this.job = null;
    this.trials = [];
    this.byNumber = new Map();
    this.rec = null;
    this.curves = [];
    this.pinned = new Set();
    this.layers = [];
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
    this.scatterTitle = h("h2", { id: "scatter-title" }, "Final loss against learning rate");
    this.scatter = h("figure", { class: "chart-slot", id: "scatter" });
    this.legend = h("div", { class: "legend" });
    this.curveChart = h("figure", { class: "chart-slot", id: "curves" });
    this.curveNote = h("p", { class: "muted small" });
    this.best = h("figure", { class: "chart-slot", id: "best-curve" });
    this.scatterChart = new ScatterChart(this.scatter);
    this.bestChart = new BestChart(this.best);
    this.recPanel = h("section", { class: "card rec-card", id: "rec-panel", "aria-labelledby": "rec-title", "aria-live": "polite" });
    this.importance = h("section", { class: "card", id: "importance", "aria-labelledby": "importance-title" });
    this.importance.hidden = true;
    this.failures = h("section", { class: "card", id: "failures", "aria-labelledby": "failures-title" });
    this.failures.hidden = true;
    this.workers = h("section", { class: "card", id: "workers", "aria-labelledby": "workers-title" });
    this.tableSlot = h("div");
    this.table = new TrialTable(this.tableSlot, {
      onPin: (number, on) => {
        if (on) this.pinned.add(number);
        else this.pinned.delete(number);
        onPin();
      },
    });
    renderRecommendation(this.recPanel, { pending: true });
    replace(this.workers, h("h2", { id: "workers-title" }, "Workers"), h("p", { class: "muted" }, "Loading…"));
    // Charts are drawn for their container's width: redraw when it changes a lot. Widths
    // come from the observer, never read while drawing: a read would force the page's layout
    // in the middle of an update (the charts hold thousands of nodes).
    this.drawnWidth = 0;
    this.widths = new Map();
    this.resize = new ResizeObserver((entries) => {
      for (const entry of entries) this.widths.set(entry.target, entry.contentRect.width);
      if (Math.abs(this._width(this.scatter) - this.drawnWidth) > 40) this._drawCharts(null);
    });
    for (const figure of [this.scatter, this.best, this.curveChart]) this.resize.observe(figure);

    replace(
      root,
      h("header", { class: "job-head" },
        h("div", { class: "job-heading" }, this.title, this.badge),
        h("div", { class: "job-actions" }, this.cancelNote, this.cancel)),
      this.sub,
      this.failure,
      h("section", { class: "card progress-card", "aria-label": "Progress" }, this.counts, this.bar, this.running, this.timing),
      h("div", { class: "panels" },
        h("section", { class: "card chart-card wide", "aria-labelledby": "scatter-title" }, this.scatterTitle, this.scatter, this.legend),
        this.recPanel,
        card("curves-card", "Training curves", this.curveChart, this.curveNote),
        h("div", { class: "stack" },
          card("best-card", "Best loss so far", this.best),
          this.importance),
        this.workers,
        this.failures),
      card("table-card", "Trials", this.tableSlot),
    );
  }

  /** Another module's drawing on this view (see the top of this file). */
  addLayer(layer) {
    this.layers.push(layer);
    this._drawScatter(new Set());
    this._drawCurves();
    renderRecommendation(this.recPanel, this.recState || { pending: true }, { extras: this._recExtras() });
  }

  /** The job (GET /jobs/{id}) was read. */
  setJob(job) {
    this.job = job;
    this.title.textContent = job.name;
    replace(this.badge, statusBadge(job.status));
    const b = job.budget;
    this.sub.textContent = [job.id, `task ${job.task.name}`, `sampler ${job.sampler}`, `pruner ${job.pruner}`, `${b.steps} steps × ${b.seeds} seeds`].join(" · ");
    const active = ACTIVE.has(job.status);
    this.failure.hidden = !(job.status === "failed" && job.error);
    this.failure.textContent = this.failure.hidden ? "" : `This job failed: ${job.error}`;
    this.cancel.hidden = !active;
    if (!active) this._resetConfirm();
    this.importance.hidden = this.tuned().length < 2;

    const p = job.progress;
    const items = [["finished", `${p.finished} / ${p.n_trials}`], ...COUNTS.map((k) => [k, String(p[k])]), ["best loss", loss(job.best_value)]];
    replace(this.counts, items.map(([label, value]) =>
      h("div", { class: ["count", `count-${label.replace(" ", "-")}`] }, h("dt", {}, label), h("dd", { dataset: { count: label.replace(" ", "-") } }, value))));
    replace(this.bar, progressBar(p));
    const started = job.started_at ? Date.parse(job.started_at) : null;
    const ended = Date.parse(job.finished_at || job.cancelled_at || "") || null;
    this.timing.textContent = [
      `created ${time(job.created_at)}`,
      started ? `${ended ? "ran" : "running for"} ${duration(((ended || Date.now()) - started) / 1000)}` : "not started yet",
    ].join(" · ");
  }

  /** The trials changed (number order); `changed`: the numbers that did (null: all may). */
  setTrials(trials, byNumber, changed = null) {
    this.trials = trials;
    this.byNumber = byNumber;
    const running = trials.filter((t) => t.state === "running");
    this.running.textContent = running.length
      ? `Running now: ${running.slice(0, 6).map((t) => `#${t.number}${t.lastStep ? ` at step ${t.lastStep}` : ""}`).join(", ")}${running.length > 6 ? ", …" : ""}`
      : "";
    this._drawCharts(changed);
    renderFailures(this.failures, trials.filter((t) => t.state === "failed"));
    this.table.update(trials, this.tuned(), this.pinned);
  }

  /** The trial numbers whose curves the chart should show for `trials` (default: the
   * view's). */
  curveNumbers(trials = this.trials) {
    return chooseCurves(trials, this.pinned);
  }

  setCurves(curves) {
    this.curves = curves;
    this._drawCurves();
  }

  setImportance(answer) {
    if (this.tuned().length >= 2) renderImportance(this.importance, answer);
  }

  setWorkers(page) {
    renderWorkers(this.workers, page);
  }

  /** {rec} or {reason}. */
  setRecommendation(state) {
    this.rec = state.rec || null;
    this.recState = state;
    renderRecommendation(this.recPanel, state, { extras: this._recExtras() });
    this._drawScatter(new Set());
  }

  tuned() {
    return Object.entries(this.job?.space || {}).filter(([, v]) => "low" in v).map(([k]) => k);
  }

  /** Stop observing (the view is being thrown away). */
  close() {
    this.resize.disconnect();
  }

  _width(figure) {
    if (!this.widths.has(figure)) this.widths.set(figure, figure.clientWidth); // before the first observation
    return this.widths.get(figure);
  }

  _recExtras() {
    return this.rec ? this.layers.flatMap((layer) => (layer.recommendation ? layer.recommendation(this.rec) : [])) : [];
  }

  _drawCharts(changed) {
    if (!this.job) return;
    if (changed === null) this.drawnWidth = this._width(this.scatter);
    this._drawScatter(changed);
    const done = this.trials.filter((t) => t.state === "complete").length;
    this.bestChart.draw(this.trials, this.byNumber, changed, {
      nTrials: this.job.progress.n_trials,
      label: `Best loss so far over ${done} complete trials: ${loss(this.job.best_value)}`,
      width: this._width(this.best),
      lossName: lossName(this.trials),
    });
    this._drawCurves();
  }

  _drawScatter(changed) {
    if (!this.job) return;
    const trials = this.trials;
    const tuned = this.tuned();
    const name = lossName(trials);
    this.scatterTitle.textContent = `${name[0].toUpperCase()}${name.slice(1)} against learning rate`;
    let done = 0;
    let div = 0;
    for (const t of trials) {
      if (t.state === "complete") done += 1;
      else if (t.state === "diverged") div += 1;
    }
    this.scatterChart.draw(trials, this.byNumber, changed, {
      space: this.job.space,
      rec: this.rec,
      layers: this.layers,
      tuned,
      lossName: name,
      label: `${name} against learning rate: ${done} complete trials, ${div} diverged${this.rec ? `; recommended learning rate ${num(this.rec.learning_rate)}` : ""}`,
      width: this._width(this.scatter),
    });
    replace(this.legend, scatterLegend(this.job.space, this.rec, tuned, this.layers));
  }

  _drawCurves() {
    if (!this.job) return;
    const extraSeries = this.layers.flatMap((layer) => (layer.series ? layer.series({ job: this.job, curves: this.curves }) : []));
    const { svg, lines } = lossCurves(this.curves, {
      trials: this.byNumber,
      steps: this.job.budget.steps,
      width: this._width(this.curveChart),
      extraSeries,
      label: `Training loss against step for ${this.curves.length} trials`,
    });
    replace(this.curveChart, svg);
    const diverged = lines.filter((l) => l.diverged !== null).length;
    this.curveNote.textContent = this.curves.length
      ? `The ${lines.length - diverged} best complete trials${diverged ? ` and ${diverged} diverged ones (× marks the step)` : ""}${this.pinned.size ? ", with those pinned in the table" : ""}.`
      : "";
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

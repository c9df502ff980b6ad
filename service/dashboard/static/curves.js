// Training curves: loss against step for a few trials (the best ones and some that diverged),
// from their stored reports (GET /jobs/{id}/curves). A diverged trial's line ends where its
// last report was, and a cross on the chart's top band marks the step it diverged at.
//
// Which trials: the `BEST` complete trials with the lowest final loss and the `DIVERGED`
// diverged ones with the lowest learning rates (the ones nearest the divergence edge),
// plus any the user pinned from the trials table. Other layers add lines of their own
// through `extraSeries` (the same shape as chart.js's lineSeries), drawn beneath these.

import { axes, frame, layout, linearScale, lineSeries, lossScale } from "./chart.js";
import { s } from "./dom.js";
import { loss, num } from "./format.js";

const BEST = 5;
const DIVERGED = 3;
export const MAX_CURVES = 12;
const BAND_Y = 24;

/** The trial numbers whose curves to show, best first, then diverged, then pinned. */
export function chooseCurves(trials, pinned) {
  const best = [];
  const diverged = [];
  for (const t of trials) {
    if (t.state === "complete" && Number.isFinite(t.value)) best.push(t);
    else if (t.state === "diverged") diverged.push(t);
  }
  best.sort((a, b) => a.value - b.value || a.number - b.number);
  diverged.sort((a, b) => (a.params.learning_rate ?? Infinity) - (b.params.learning_rate ?? Infinity) || a.number - b.number);
  const chosen = [...best.slice(0, BEST), ...diverged.slice(0, DIVERGED)].map((t) => t.number);
  for (const n of pinned) if (!chosen.includes(n)) chosen.push(n);
  return chosen.slice(0, MAX_CURVES);
}

/** A colour class per curve: best ones by rank, diverged red, pinned neutral. */
function role(trial, rank) {
  if (trial?.state === "diverged") return "curve-diverged";
  if (trial?.state === "complete" && rank < BEST) return `curve-best curve-rank-${rank}`;
  return "curve-other";
}

/**
 * The chart. `curves` come from the API (number, state, steps, loss, diverged_at_step);
 * `trials` by number gives their parameters for the labels; `steps` is the job's budget.
 */
export function lossCurves(curves, { trials, steps, label, width, extraSeries = [] }) {
  const size = layout(width);
  const BOX = size.box;
  const svg = frame(size, label);
  const values = [];
  for (const c of [...curves, ...extraSeries.map((e) => ({ loss: e.points.map((p) => p[1]) }))]) {
    for (const v of c.loss) if (Number.isFinite(v)) values.push(v);
  }
  const x = linearScale(0, Math.max(1, steps), BOX.left, BOX.right);
  const y = lossScale(values, BOX.bottom, BOX.top);
  svg.append(axes(BOX, x, y, {
    xLabel: "step",
    yLabel: y.log ? "training loss, mean over seeds (log scale)" : "training loss, mean over seeds",
    xFormat: (v) => String(Math.round(v)),
  }));
  svg.append(
    s("rect", { class: "band", x: BOX.left, y: BAND_Y - 10, width: BOX.right - BOX.left, height: 20 }),
    s("text", { class: "band-label", x: BOX.left - 6, y: BAND_Y + 4, "text-anchor": "end" }, "diverged"),
  );
  if (extraSeries.length) svg.append(lineSeries(extraSeries, x, y));

  let rank = 0;
  const ours = curves.map((c) => {
    const t = trials.get(c.number);
    const cls = role(t, c.state === "complete" ? rank : BEST);
    if (c.state === "complete") rank += 1;
    const lr = t ? `lr ${num(t.params.learning_rate)}` : "";
    const end = c.state === "diverged" ? `diverged at step ${c.diverged_at_step ?? "?"}` : `final ${loss(t?.value)}`;
    return {
      key: `trial-${c.number}`,
      label: `Trial ${c.number} · ${lr} · ${end}`,
      className: cls,
      points: c.steps.map((step, i) => [step, c.loss[i]]),
      number: c.number,
      diverged: c.state === "diverged" ? c.diverged_at_step : null,
    };
  });
  svg.append(lineSeries(ours, x, y));
  // The divergence step of each diverged curve, on the band above the plot.
  const marks = s("g", { class: "points" });
  for (const line of ours) {
    if (line.diverged === null || line.diverged === undefined) continue;
    marks.append(
      s("path", {
        class: "div-mark curve-div",
        d: "M-4,-4L4,4M-4,4L4,-4",
        transform: `translate(${x(Math.min(line.diverged, steps)).toFixed(1)} ${BAND_Y})`,
        dataset: { trial: line.number },
      }, s("title", {}, `Trial ${line.number} diverged at step ${line.diverged}`)),
    );
  }
  svg.append(marks);
  if (!curves.length && !extraSeries.length) {
    svg.append(s("text", { class: "empty-note", x: (BOX.left + BOX.right) / 2, y: (BOX.top + BOX.bottom) / 2, "text-anchor": "middle" }, "no finished trial yet"));
  } else if (curves.length && curves.every((c) => c.steps.length === 0)) {
    svg.append(s("text", { class: "empty-note", x: (BOX.left + BOX.right) / 2, y: (BOX.top + BOX.bottom) / 2, "text-anchor": "middle" }, "these trials reported no intermediate loss"));
  }
  return { svg, lines: ours };
}

/** Keeps the curves of a job: finished trials' curves never change, so they are fetched
 * once; those of trials still running are fetched again when the trial moved on. */
export class CurveStore {
  constructor(api, jobId) {
    this.api = api;
    this.jobId = jobId;
    this.byNumber = new Map(); // number -> {curve, key}
  }

  /** Curves for `numbers` (in that order), fetching only what is missing or stale. */
  async get(numbers, trials, { signal } = {}) {
    const keyOf = (t) => (t ? `${t.state}|${t.attempt}|${t.lastStep ?? ""}` : "");
    const missing = numbers.filter((n) => this.byNumber.get(n)?.key !== keyOf(trials.get(n)));
    if (missing.length) {
      const page = await this.api.curves(this.jobId, missing, { signal });
      for (const curve of page.curves) this.byNumber.set(curve.number, { curve, key: keyOf(trials.get(curve.number)) });
    }
    return numbers.map((n) => this.byNumber.get(n)?.curve).filter(Boolean);
  }
}

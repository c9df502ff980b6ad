// The answer in context: the job's baselines (reference optimizers trained on the same seeds
// and steps, docs/recommendation.md) drawn as horizontal lines on the loss-against-learning-
// rate chart, and the server's one-line comparison in the recommendation panel. Read from the
// recommendation (`rec.baselines`, `rec.comparison`); nothing is shown for a job without.
// Drawn through the job view's layer hook (`baselinesLayer`, jobview.js's `addLayer`).

import { h, s } from "./dom.js";
import { loss, num } from "./format.js";

function measured(rec) {
  return (rec?.baselines || []).filter((b) => Number.isFinite(b.validation_loss));
}

/** The baselines' mean validation losses: the chart's y range must hold them too. */
export function baselineLosses(rec) {
  return measured(rec).map((b) => b.validation_loss);
}

function describe(b) {
  const n = b.seeds.length;
  const parts = [`${b.label}: validation loss ${loss(b.validation_loss)}`];
  if (n > 1) parts.push(`± ${num(b.seed_std, 2)} over ${n} seeds`);
  if (b.diverged_seeds.length) parts.push(`${b.diverged_seeds.length} of ${n} seeds diverged`);
  if (Number.isFinite(b.relative_difference)) {
    const pct = Math.abs(100 * b.relative_difference);
    parts.push(`ACProp at the recommendation ${num(pct, 2)} % ${b.relative_difference < 0 ? "lower" : "higher"}`);
  }
  return parts.join(" · ");
}

/** One dashed horizontal line per measured baseline across the plot area `box`, labelled at
 * its right end, with the baseline's losses in its tooltip. */
export function baselineLines(rec, y, box) {
  const g = s("g", { class: "baselines" });
  const taken = [];
  for (const b of measured(rec)) {
    if (y.log && !(b.validation_loss > 0)) continue;
    const py = y(b.validation_loss);
    // Labels of close lines go above/below each other instead of on top.
    let ly = py - 4;
    while (taken.some((t) => Math.abs(t - ly) < 11)) ly -= 11;
    taken.push(ly);
    g.append(
      s("line", { class: "baseline-line", x1: box.left, x2: box.right, y1: py, y2: py, dataset: { optimizer: b.optimizer } },
        s("title", {}, describe(b))),
      s("text", { class: "baseline-label", x: box.right - 4, y: ly, "text-anchor": "end" }, b.label),
    );
  }
  return g;
}

/** The legend's entry for the lines (none without a measured baseline). */
export function baselineLegend(rec, swatch) {
  if (!measured(rec).length) return [];
  return [h("span", { class: "legend-item" }, swatch("baseline-line", { tag: "line", attrs: { x1: -6, x2: 6, y1: 0, y2: 0 } }), "baselines (same seeds)")];
}

/** The recommendation panel's line: "ACProp at the recommendation: 12 % lower loss than
 * Adam 1e-3, …" (null without baselines). */
export function comparisonLine(rec) {
  if (!rec?.comparison) return null;
  return h("p", { class: "rec-comparison", dataset: { testid: "rec-comparison" } }, rec.comparison);
}

/** The job view's layer (jobview.js): the lines and their legend on the loss-against-learning-
 * rate chart (whose loss range holds them), the comparison in the recommendation panel. */
export const baselinesLayer = {
  scatterLosses: (rec) => baselineLosses(rec),
  scatter: (rec, { y, box }) => [baselineLines(rec, y, box)],
  legend: (rec, swatch) => baselineLegend(rec, swatch),
  recommendation: (rec) => [comparisonLine(rec)].filter(Boolean),
};

// The recommendation panel: the configuration, its learning-rate interval and the
// divergence edge, the evidence, and the optax line with a copy button. While the server
// has no recommendation (409) it shows the server's reason instead; an answer fitted on
// older trials (the server fits in the background) says how far it lags.

import { h, replace } from "./dom.js";
import { loss, num, plural } from "./format.js";

const PARAMS = ["learning_rate", "b1", "b2", "eps", "eps_root", "weight_decay"];

/** `state`: {rec} (the server's answer), {reason, ended} (409's detail; whether the job has
 * ended, so no answer will come), {pending: true} or {computing: true} (asked, not answered
 * yet). `extras`: nodes other layers add under an answer, above its optax line (such as
 * the comparison with the job's baselines; see jobview.js). */
export function renderRecommendation(panel, state, { extras = [] } = {}) {
  const title = h("h2", { id: "rec-title" }, "Recommendation");
  if (state.pending) {
    replace(panel, title, h("p", { class: "muted" }, "Waiting for finished trials…"));
    return;
  }
  if (state.computing) {
    replace(panel, title, h("p", { class: "muted", dataset: { testid: "rec-computing" } },
      "The server is computing the recommendation from the finished trials…"));
    return;
  }
  if (!state.rec) {
    replace(
      panel,
      title,
      h("p", { class: "rec-reason", dataset: { testid: "rec-reason" } }, state.reason),
      h("p", { class: "muted small" }, state.ended
        ? "The job has ended without one."
        : "It appears here as soon as enough trials have finished."),
    );
    return;
  }
  const rec = state.rec;
  const tuned = new Set(rec.evidence.tuned);
  const e = rec.evidence;
  const rows = PARAMS.filter((name) => name !== "weight_decay" || rec[name] !== 0 || tuned.has(name)).map((name) =>
    h("tr", { class: tuned.has(name) ? "tuned" : null },
      h("th", { scope: "row" }, name),
      h("td", {}, num(rec[name], 3)),
      h("td", { class: "muted small" }, tuned.has(name) ? "tuned" : "fixed")),
  );
  const f = rec.freshness;
  const lag = f && !f.current
    ? h("p", { class: "muted small rec-lag", dataset: { testid: "rec-lag" } },
      `Fitted on ${plural(f.trials_used, "finished trial")}; ${f.trials_behind} more finished since` +
      (f.refitting ? ": an update is being computed." : "."))
    : null;
  const code = h("code", { id: "optax-line" }, rec.optax);
  const copied = h("span", { class: "copied muted small", role: "status", "aria-live": "polite" });
  const copy = h("button", { type: "button", class: "copy", "aria-label": "Copy the optax line", on: { click: () => copyLine(rec.optax, code, copied) } }, "Copy");

  replace(
    panel,
    h("div", { class: "rec-head" }, title, h("span", { class: ["badge", `rec-${rec.status}`] }, rec.status)),
    lag,
    h("div", { class: "rec-body" },
      h("table", { class: "rec-table" },
        h("caption", { class: "visually-hidden" }, "Recommended ACProp configuration"),
        h("tbody", {}, rows)),
      h("dl", { class: "rec-facts" },
        fact("lr interval", `${num(rec.lr_interval[0], 2)} – ${num(rec.lr_interval[1], 2)}`,
          `within ${num(100 * rec.tolerance, 2)} % of the best predicted loss`),
        fact("divergence edge", rec.divergence_lr === null ? "not reached" : `≈ ${num(rec.divergence_lr, 2)}`,
          rec.divergence_lr === null ? "no trial diverged near here" : `kept a factor ${num(rec.margin, 2)} below it`),
        fact("expected loss", loss(rec.expected_loss.mean), `± ${num(rec.expected_loss.seed_std, 2)} across seeds`),
        fact("evidence", `${e.n_trials_used} of ${e.n_trials} trials`,
          `${plural(e.n_seeds_used, "seed")} used, ${e.n_trials_diverged} diverged; tuned: ${e.tuned.join(", ")}`),
      )),
    extras,
    h("div", { class: "optax" }, h("pre", {}, code), h("div", { class: "optax-actions" }, copy, copied)),
  );
}

function fact(term, value, note) {
  return h("div", { class: "fact" }, h("dt", {}, term), h("dd", {}, h("span", { class: "fact-value" }, value), h("span", { class: "muted small" }, note)));
}

async function copyLine(text, code, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied";
  } catch {
    // No clipboard permission: select the line so that Ctrl+C copies it.
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = "Selected: press Ctrl+C to copy";
  }
  setTimeout(() => {
    status.textContent = "";
  }, 2500);
}

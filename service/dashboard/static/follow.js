// Following the selected job: one `refresh` per poll reads the job, then only what changed
// (tracker.js), then the panels that depend on it: curves (only those of trials not held
// yet or still running; asked before the charts are drawn), importance and the workers
// (while the job runs, beside the job itself, at most every `SIDE_EVERY_MS`; once it has
// ended, the importance only while the server still computes it, and the workers every
// fifth poll). The recommendation is
// asked beside the poll, never in its way: on a large job the server may take minutes to fit
// it, and the page keeps updating meanwhile.
//
// In-page marks time it: `acprop:job-drawn` when the job view is first fully drawn (its
// frame painted), and an `acprop:update` measure per poll that changed the trials, from its
// start to the frame with the last panel painted (the benchmark reads them: bench/dashboard.py).

import { ApiError, describe } from "./api.js";
import { baselinesLayer } from "./baselines.js";
import { CurveStore } from "./curves.js";
import { JobView } from "./jobview.js";
import { TrialTracker } from "./tracker.js";

/** After the browser has drawn the next frame (at once in a hidden tab, which draws none). */
function nextFrame() {
  if (document.hidden) return Promise.resolve();
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

/** After the tasks already queued (a request just made is sent then). */
function nextTask() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

const WORKERS_EVERY_ENDED = 5; // polls between reads of the workers once the job has ended
// While the job runs, the workers and the importance are read at most this often (ms): the
// importance is recomputed by the server at most every few seconds anyway, and each request
// beside the job's own costs the server time that the trials' update waits for.
const SIDE_EVERY_MS = 6000;
const ACTIVE = ["queued", "running"];

export class JobFollower {
  /** `onCancel()` cancels the job; `onError(err)` handles a failed side request. */
  constructor(api, id, root, { onCancel, onError }) {
    this.api = api;
    this.id = id;
    this.root = root;
    this.onCancel = onCancel;
    this.onError = onError;
    this.tracker = new TrialTracker(api, id);
    this.curves = new CurveStore(api, id);
    this.abort = new AbortController();
    this.view = null;
    this.closed = false;
    this.drawn = false;
    this.polls = 0;
    this.recKey = null; // the job state the shown recommendation is for
    this.recAsked = false;
    this.recShown = false; // an answer is on the panel
    this.recLatest = null; // the job and key of the last poll
    this.impKey = null;
    this.impComputing = false;
    this.status = null; // as last read
    this.sideAt = -Infinity; // when the workers and the importance were last read while it ran
  }

  close() {
    this.closed = true;
    this.abort.abort();
    this.view?.close();
  }

  /** One poll's work; resolves with the job, or throws the API's error (404 included). */
  async refresh() {
    const { signal } = this.abort;
    const started = performance.now();
    // While the job runs, what does not depend on its counts is read beside the job itself:
    // the trials after the highest held, the workers, the importance (an answer from the
    // server's cache), so that an update costs one round trip, not three.
    const running = this.drawn && ACTIVE.includes(this.status);
    // (And on the first poll, which needs every trial whatever the job's state.)
    const ahead = running || !this.drawn ? this.tracker.readAhead(signal) : null;
    const panels = [];
    if (running && started - this.sideAt >= SIDE_EVERY_MS) {
      this.sideAt = started;
      panels.push(this.refreshWorkers());
      if (this.view.tuned().length >= 2) panels.push(this.refreshImportance());
    }
    const job = await this.api.job(this.id, { signal });
    if (this.closed) return job;
    this.status = job.status;
    if (!this.view) {
      this.view = new JobView(this.root, {
        onCancel: () => this.onCancel(),
        onPin: () => this.refreshCurves().catch((err) => this.onError(err)),
      });
      this.view.addLayer(baselinesLayer);
      this.root.hidden = false;
    }
    this.view.setJob(job);
    this.polls += 1;
    const first = !this.drawn;
    const p = job.progress;
    const importance =
      !running && this.view.tuned().length >= 2 && (`${p.complete + p.diverged}` !== this.impKey || this.impComputing);
    if (!running && (first || this.polls % WORKERS_EVERY_ENDED === 0)) panels.push(this.refreshWorkers());
    // (On the first poll the importance waits for the trials: a server with none kept starts
    // computing it, which would compete with reading them.)
    if (importance && !first) panels.push(this.refreshImportance());
    const changed = await this.tracker.refresh(job, { signal, ahead });
    if (this.closed) return job;
    if (changed || first) {
      const numbers = this.tracker.takeChanged();
      // The curves and the importance are asked for before the charts are drawn, so that the
      // server answers them while the page draws (thousands of nodes on a first render).
      const curves = this.fetchCurves(this.tracker.trials);
      if (importance && first) panels.push(this.refreshImportance());
      if (first) await nextTask(); // (the browser sends them once this task yields)
      if (this.closed) return job;
      this.view.setTrials(this.tracker.trials, this.tracker.byNumber, first ? null : numbers);
      panels.push(
        curves.then((list) => {
          if (!this.closed) this.view.setCurves(list);
        }),
      );
    }
    await Promise.all(panels);
    if (this.closed) return job;
    if (first || changed) await nextFrame(); // the marks include drawing it on the screen
    const detail = { job: this.id, trials: this.tracker.trials.length };
    if (first) {
      this.drawn = true;
      performance.mark("acprop:job-drawn", { detail });
    } else if (changed) {
      performance.measure("acprop:update", { start: started, detail });
    }
    this.askRecommendation(job);
    return job;
  }

  async refreshCurves() {
    const curves = await this.fetchCurves(this.view.trials);
    if (!this.closed) this.view.setCurves(curves);
  }

  /** The curves the chart should show for `trials` (those not held yet are fetched). */
  fetchCurves(trials) {
    const numbers = this.view.curveNumbers(trials);
    return this.curves.get(numbers, this.tracker.byNumber, { signal: this.abort.signal });
  }

  async refreshImportance() {
    const answer = await this.api.importance(this.id, { signal: this.abort.signal });
    if (this.closed) return;
    this.view.setImportance(answer);
    this.impKey = `${answer.n_finished}`;
    this.impComputing = answer.computing;
  }

  async refreshWorkers() {
    const page = await this.api.workers({ signal: this.abort.signal });
    if (!this.closed) this.view.setWorkers(page);
  }

  /** The recommendation only changes with the finished trials it uses, the job's end, or its
   * baselines (trained beside it): asked again then, one request at a time; if the job moved
   * on while one was asked, asked again as soon as that one is answered. The server fits in
   * the background: an answer on older trials (`freshness.current` false) or a 409
   * `computing` is asked again at the next poll, the job's state unchanged or not; while the
   * server computes, the answer already shown stays (with how far it lags). */
  askRecommendation(job) {
    const p = job.progress;
    const runs = (job.baselines || []).map((b) => b.state).join(",");
    const key = `${job.status}|${p.complete}|${p.diverged}|${runs}`;
    this.recLatest = { job, key };
    if (key === this.recKey || this.recAsked) return;
    this.recAsked = true;
    if (this.recKey === null) this.view.setRecommendation({ computing: true });
    const ended = !ACTIVE.includes(job.status);
    this.api
      .recommendation(this.id, { signal: this.abort.signal })
      .then((rec) => ({ rec, again: Boolean(rec.freshness && !rec.freshness.current) }))
      .catch((err) => {
        if (err instanceof ApiError && err.status === 409) {
          const again = err.code === "computing" || err.code === "recommendation_failed";
          return { reason: describe(err.detail), ended, again, computing: again && !this.recShown };
        }
        throw err;
      })
      .then((state) => {
        if (this.closed) return;
        // (A 409 while the server computes leaves the answer shown, if any, in place.)
        if (state.rec || !state.again || !this.recShown) this.view.setRecommendation(state);
        if (state.rec) this.recShown = true;
        this.recKey = state.again ? `${key}|again` : key;
        performance.mark("acprop:rec-drawn", { detail: { job: this.id } });
      })
      .catch((err) => {
        if (!this.closed) this.onError(err);
      })
      .finally(() => {
        this.recAsked = false;
        // (Not after a failure: the next poll asks again, not a loop of failing requests.)
        const latest = this.recLatest;
        if (!this.closed && this.recKey === key && latest.key !== key) this.askRecommendation(latest.job);
      });
  }
}

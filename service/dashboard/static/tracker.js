// A job's trials, kept up to date incrementally, from the compact feed
// (GET /jobs/{id}/trials/columns: one row of columns per trial, no reports).
//
// Each poll reads the job (one small request). Trials are numbered 0, 1, 2, ... in the
// order they are created, so the job's progress counts tell whether anything changed:
//   - new trials exist when the job counts more trials than we hold: fetch only those
//     (`?after=<highest number we hold>`, paged);
//   - a trial we hold can only change while it is waiting or running: re-fetch only
//     those, as a few contiguous number ranges;
//   - when the counts did not move, fetch no trials at all (running trials are still
//     refreshed now and then, for the step they last reported).
// A finished job whose trials we hold therefore costs one request per poll, however many
// trials it has. While a job runs, the page may read the trials after the highest it holds
// beside the job itself (`readAhead`: answered empty when there are none), so that new
// trials arrive one round trip sooner.

const PAGE = 5000;
const MAX_RANGES = 6; // per poll; closer ranges are merged beyond this
const RUNNING_REFRESH_POLLS = 5;
const OPEN_STATES = new Set(["waiting", "running"]);

export class TrialTracker {
  constructor(api, jobId) {
    this.api = api;
    this.jobId = jobId;
    this.byNumber = new Map();
    this.highest = -1;
    this.signature = null;
    this.polls = 0;
    this.version = 0; // bumps whenever a trial changed
    this.changed = new Set(); // numbers changed since the view last took them
    this._sorted = [];
    this._dirty = false;
  }

  /** Trials in number order. */
  get trials() {
    if (this._dirty) {
      this._sorted = [...this.byNumber.values()].sort((a, b) => a.number - b.number);
      this._dirty = false;
    }
    return this._sorted;
  }

  /** The numbers of the trials that changed since the last call (and forget them). */
  takeChanged() {
    const out = this.changed;
    this.changed = new Set();
    return out;
  }

  /** The trials after the highest held, read now (beside the job); null if that failed (the
   * regular path reads them then). Pass the promise to `refresh`. */
  readAhead(signal) {
    const after = this.highest;
    return this.api
      .trialColumns(this.jobId, after, PAGE, { signal })
      .then((page) => ({ after, page }))
      .catch(() => null);
  }

  /** Bring the trials up to date with `job` (just read; `ahead` from `readAhead`, started
   * before it was read); returns true if any changed. */
  async refresh(job, { signal, ahead = null } = {}) {
    const early = this.version;
    const read = ahead ? await ahead : null;
    if (read && read.after === this.highest) {
      for (const trial of rows(read.page)) this._store(trial);
      if (read.page.next_after !== null && read.page.next_after !== undefined) {
        await this._fetchAfter(read.page.next_after, null, signal);
      }
    }
    const p = job.progress;
    const total = p.finished + p.waiting + p.running;
    const signature = [job.status, p.waiting, p.running, p.complete, p.pruned, p.diverged, p.failed].join("|");
    this.polls += 1;
    const open = [];
    for (const t of this.byNumber.values()) if (OPEN_STATES.has(t.state)) open.push(t);
    const due =
      signature !== this.signature ||
      (open.some((t) => t.state === "running") && this.polls % RUNNING_REFRESH_POLLS === 0);
    if (!due) return this.version !== early;

    const before = this.version;
    const work = [];
    if (total > this.highest + 1) work.push(this._fetchAfter(this.highest, null, signal));
    for (const [first, last] of ranges(open.map((t) => t.number), MAX_RANGES)) {
      work.push(this._fetchAfter(first - 1, last, signal));
    }
    await Promise.all(work);
    // Only now: a failed fetch leaves the signature stale, so the next poll tries again.
    this.signature = signature;
    return this.version !== before || this.version !== early;
  }

  /** Trials numbered above `after` (up to `last`, or to the end), page by page. */
  async _fetchAfter(after, last, signal) {
    let cursor = after;
    for (;;) {
      const limit = last === null ? PAGE : Math.min(PAGE, last - cursor);
      if (limit <= 0) return;
      const page = await this.api.trialColumns(this.jobId, cursor, limit, { signal });
      for (const trial of rows(page)) this._store(trial);
      if (page.next_after === null || page.next_after === undefined) return;
      cursor = page.next_after;
    }
  }

  _store(trial) {
    const old = this.byNumber.get(trial.number);
    if (old && sameTrial(old, trial)) return;
    this.byNumber.set(trial.number, trial);
    this.highest = Math.max(this.highest, trial.number);
    this.changed.add(trial.number);
    this.version += 1;
    this._dirty = true;
  }
}

/** The feed's columns as one object per trial. */
export function rows(page) {
  const names = Object.keys(page.params);
  const out = new Array(page.number.length);
  for (let i = 0; i < out.length; i += 1) {
    const params = {};
    for (const name of names) params[name] = page.params[name][i];
    const number = page.number[i];
    out[i] = {
      number,
      state: page.state[i],
      source: page.source[i],
      attempt: page.attempt[i],
      params,
      value: page.value[i],
      onValidation: page.on_validation[i],
      diverged_at_step: page.diverged_at_step[i],
      lastStep: page.last_step[i],
      wall_s: page.wall_s[i],
      error: page.errors[String(number)] ?? null,
    };
  }
  return out;
}

function sameTrial(a, b) {
  return (
    a.state === b.state &&
    a.attempt === b.attempt &&
    a.value === b.value &&
    a.lastStep === b.lastStep &&
    a.error === b.error
  );
}

/** Sorted contiguous [first, last] runs of `numbers`, merged down to at most `max` runs
 * by closing the smallest gaps (re-reading a few finished trials beats many requests). */
export function ranges(numbers, max) {
  const sorted = [...numbers].sort((a, b) => a - b);
  const runs = [];
  for (const n of sorted) {
    const run = runs[runs.length - 1];
    if (run && n === run[1] + 1) run[1] = n;
    else runs.push([n, n]);
  }
  while (runs.length > max) {
    let best = 1;
    for (let i = 2; i < runs.length; i += 1) {
      if (runs[i][0] - runs[i - 1][1] < runs[best][0] - runs[best - 1][1]) best = i;
    }
    runs[best - 1][1] = runs[best][1];
    runs.splice(best, 1);
  }
  return runs;
}

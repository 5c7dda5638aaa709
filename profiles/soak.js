/**
 * profiles/soak.js: a long steady run, to see what only time shows (k6 v1.1.0).
 *
 * What it looks for: memory that grows (leaks, unbounded caches), latency that drifts as the
 * store grows (indexes, WAL checkpoints, the attempts table before its pruning), slowly
 * accumulating lag or inconsistencies. Healthy processors, a steady rate: any trend is ours.
 * Record it with `rinha profile run soak --plot soak.png` to see the trend over time.
 *
 *   payments          a 10 s ramp to MAX_REQUESTS VUs (one payment per VU per second), held for
 *                     SOAK_SECONDS in all (default 600: 10 minutes, ~165,000 payments at 275 VUs,
 *                     the contest's average rate).
 *   processor_stages  at 0.1 s, both healthy: default with DEFAULT_DELAY_MS (default 0), fallback 0.
 *   audit             every AUDIT_SECONDS (default 10), the contest's audit.
 *   setup, teardown, summary: as contest.js (see lib/harness.js); the summary's shape is
 *                     contest.js's, so `python -m rinha.score` scores it with the contest's formula
 *                     (the final window is the test's length + 10 s).
 *
 * Environment parameters (all optional), besides TARGET, DEFAULT_URL, FALLBACK_URL,
 * PROCESSOR_TOKEN and SUMMARY_PATH (as in contest.js):
 *   MAX_REQUESTS       steady VUs                   default 275 (the contest's average rate)
 *   SOAK_SECONDS       length of the run            default 600
 *   DEFAULT_DELAY_MS   default processor's delay    default 0
 *   AUDIT_SECONDS      audit period                 default 10
 * Short run:  SOAK_SECONDS=15 MAX_REQUESTS=100 k6 run profiles/soak.js
 * Validate:   k6 inspect profiles/soak.js
 */

import { envNumber, profile } from "./lib/harness.js";

const MAX_REQUESTS = envNumber("MAX_REQUESTS", 275, { integer: true });
const SOAK_SECONDS = envNumber("SOAK_SECONDS", 600);
const DEFAULT_DELAY_MS = envNumber("DEFAULT_DELAY_MS", 0, { integer: true, min: -1 });
const AUDIT_SECONDS = envNumber("AUDIT_SECONDS", 10);

const RAMP_SECONDS = Math.min(10, SOAK_SECONDS / 2);

const run = profile({
  name: "soak",
  params: { soak_seconds: SOAK_SECONDS, default_delay_ms: DEFAULT_DELAY_MS, audit_seconds: AUDIT_SECONDS },
  startVUs: 1,
  vuStages: [
    { target: MAX_REQUESTS, duration: RAMP_SECONDS },
    { target: MAX_REQUESTS, duration: SOAK_SECONDS - RAMP_SECONDS },
  ],
  stages: [{ at: 0.1, default: { delay: DEFAULT_DELAY_MS, failure: false }, fallback: { delay: 0, failure: false } }],
  auditSeconds: AUDIT_SECONDS,
});

export const { options, setup, payments, applyStages, audit, teardown, handleSummary } = run;

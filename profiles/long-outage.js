/**
 * profiles/long-outage.js: the default processor failing for minutes, not seconds (k6 v1.1.0).
 *
 * What it asks of the backend: keep accepting at a steady rate while the cheap processor is down
 * far longer than the contest's 20 s, choose between waiting (a growing backlog, lag if the run
 * ends first) and paying the fallback's 15 % fee, and drain the whole backlog once default is
 * back, without an inconsistency (every audit window crosses the recovery).
 *
 *   payments          a 10 s ramp to MAX_REQUESTS VUs (one payment per VU per second), held to
 *                     the end: OUTAGE_START + OUTAGE_SECONDS + RECOVERY_SECONDS in all
 *                     (10 + 180 + 60 = 250 s with the defaults, ~70,000 payments at 300 VUs).
 *   processor_stages  at 0.1 s both healthy, delay 0;
 *                     at OUTAGE_START, default failing (delay DEFAULT_DELAY_MS, 100 by default,
 *                     as the contest's failing stages), fallback healthy with FALLBACK_DELAY_MS
 *                     (default 0);
 *                     at OUTAGE_START + OUTAGE_SECONDS, both healthy, delay 0: the drain.
 *   audit             every AUDIT_SECONDS (default 10), the contest's audit.
 *   setup, teardown, summary: as contest.js (see lib/harness.js); the summary's shape is
 *                     contest.js's, so `python -m rinha.score` scores it with the contest's formula
 *                     (its final window is the test's length + 10 s, like the contest's 70 s).
 *
 * Environment parameters (all optional), besides TARGET, DEFAULT_URL, FALLBACK_URL,
 * PROCESSOR_TOKEN and SUMMARY_PATH (as in contest.js):
 *   MAX_REQUESTS        steady VUs                                  default 300
 *   OUTAGE_START        seconds before default fails                default 10
 *   OUTAGE_SECONDS      how long default fails                      default 180
 *   RECOVERY_SECONDS    healthy load after the outage (the drain)   default 60
 *   DEFAULT_DELAY_MS    default's delay while failing               default 100
 *   FALLBACK_DELAY_MS   fallback's delay during the outage          default 0
 *   AUDIT_SECONDS       audit period                                default 10
 * Short run:  OUTAGE_START=2 OUTAGE_SECONDS=10 RECOVERY_SECONDS=8 MAX_REQUESTS=100 k6 run profiles/long-outage.js
 * Validate:   k6 inspect profiles/long-outage.js
 */

import { envNumber, profile } from "./lib/harness.js";

const MAX_REQUESTS = envNumber("MAX_REQUESTS", 300, { integer: true });
const OUTAGE_START = envNumber("OUTAGE_START", 10);
const OUTAGE_SECONDS = envNumber("OUTAGE_SECONDS", 180);
const RECOVERY_SECONDS = envNumber("RECOVERY_SECONDS", 60);
const DEFAULT_DELAY_MS = envNumber("DEFAULT_DELAY_MS", 100, { integer: true, min: -1 });
const FALLBACK_DELAY_MS = envNumber("FALLBACK_DELAY_MS", 0, { integer: true, min: -1 });
const AUDIT_SECONDS = envNumber("AUDIT_SECONDS", 10);

const RAMP_SECONDS = Math.min(10, OUTAGE_START);
const testSeconds = OUTAGE_START + OUTAGE_SECONDS + RECOVERY_SECONDS;

const run = profile({
  name: "long-outage",
  params: {
    outage_start: OUTAGE_START,
    outage_seconds: OUTAGE_SECONDS,
    recovery_seconds: RECOVERY_SECONDS,
    default_delay_ms: DEFAULT_DELAY_MS,
    fallback_delay_ms: FALLBACK_DELAY_MS,
    audit_seconds: AUDIT_SECONDS,
  },
  startVUs: 1,
  vuStages: [
    { target: MAX_REQUESTS, duration: RAMP_SECONDS },
    { target: MAX_REQUESTS, duration: testSeconds - RAMP_SECONDS },
  ],
  stages: [
    { at: 0.1, default: { delay: 0, failure: false }, fallback: { delay: 0, failure: false } },
    {
      at: OUTAGE_START,
      default: { delay: DEFAULT_DELAY_MS, failure: true },
      fallback: { delay: FALLBACK_DELAY_MS, failure: false },
    },
    {
      at: OUTAGE_START + OUTAGE_SECONDS,
      default: { delay: 0, failure: false },
      fallback: { delay: 0, failure: false },
    },
  ],
  auditSeconds: AUDIT_SECONDS,
});

export const { options, setup, payments, applyStages, audit, teardown, handleSummary } = run;

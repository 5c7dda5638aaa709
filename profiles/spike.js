/**
 * profiles/spike.js: sudden bursts above the contest's peak rate (k6 v1.1.0).
 *
 * What it asks of the backend: answer every POST within the 1.5 s timeout (and fast: the p99
 * covers the bursts) when the arrival rate jumps from calm to twice the contest's peak in one
 * second, with no warm ramp, then drops back; and pay all of it with healthy processors.
 *
 *   payments          BASE_VUS VUs (one payment per VU per second, as the contest's) for
 *                     CALM_SECONDS, then SPIKES times: a jump to MAX_REQUESTS VUs within 1 s,
 *                     held SPIKE_SECONDS, a drop back to BASE_VUS within 1 s, CALM_SECONDS of calm.
 *                     With the defaults: 100 -> 1100 VUs, 3 spikes of 5 s, 81 s in all.
 *   processor_stages  both processors healthy, delay 0, for the whole run (one stage at 0.1 s);
 *                     the default processor slows to SPIKE_DELAY_MS during each spike (default
 *                     0: off), so that the backlog of a spike can be made to outlive it.
 *   audit             every AUDIT_SECONDS (default 10), the contest's audit.
 *   setup, teardown, summary: as contest.js (see lib/harness.js); the summary's shape is
 *                     contest.js's, so `python -m rinha.score` scores it with the contest's formula.
 *
 * Environment parameters (all optional), besides TARGET, DEFAULT_URL, FALLBACK_URL,
 * PROCESSOR_TOKEN and SUMMARY_PATH (as in contest.js):
 *   MAX_REQUESTS     VUs during a spike                       default 1100 (2 x the contest's peak)
 *   BASE_VUS         VUs between spikes                       default 100
 *   SPIKES           number of spikes                         default 3
 *   SPIKE_SECONDS    length of one spike at its top           default 5
 *   CALM_SECONDS     calm before, between and after spikes    default 15
 *   SPIKE_DELAY_MS   default processor's delay during spikes  default 0
 *   AUDIT_SECONDS    audit period                             default 10
 * Short run:  SPIKES=1 SPIKE_SECONDS=2 CALM_SECONDS=3 MAX_REQUESTS=300 k6 run profiles/spike.js
 * Validate:   k6 inspect profiles/spike.js
 */

import { envNumber, profile } from "./lib/harness.js";

const MAX_REQUESTS = envNumber("MAX_REQUESTS", 1100, { integer: true });
const BASE_VUS = envNumber("BASE_VUS", 100, { integer: true });
const SPIKES = envNumber("SPIKES", 3, { integer: true });
const SPIKE_SECONDS = envNumber("SPIKE_SECONDS", 5);
const CALM_SECONDS = envNumber("CALM_SECONDS", 15);
const SPIKE_DELAY_MS = envNumber("SPIKE_DELAY_MS", 0, { integer: true, min: -1 });
const AUDIT_SECONDS = envNumber("AUDIT_SECONDS", 10);

const JUMP_SECONDS = 1;
const vuStages = [{ target: BASE_VUS, duration: CALM_SECONDS }];
const healthy = (defaultDelay) => ({
  default: { delay: defaultDelay, failure: false },
  fallback: { delay: 0, failure: false },
});
const stages = [{ at: 0.1, ...healthy(0) }];
let at = CALM_SECONDS;
for (let i = 0; i < SPIKES; i++) {
  vuStages.push(
    { target: MAX_REQUESTS, duration: JUMP_SECONDS },
    { target: MAX_REQUESTS, duration: SPIKE_SECONDS },
    { target: BASE_VUS, duration: JUMP_SECONDS },
    { target: BASE_VUS, duration: CALM_SECONDS },
  );
  if (SPIKE_DELAY_MS > 0) {
    stages.push({ at, ...healthy(SPIKE_DELAY_MS) }, { at: at + JUMP_SECONDS + SPIKE_SECONDS, ...healthy(0) });
  }
  at += 2 * JUMP_SECONDS + SPIKE_SECONDS + CALM_SECONDS;
}

const run = profile({
  name: "spike",
  params: {
    base_vus: BASE_VUS,
    spikes: SPIKES,
    spike_seconds: SPIKE_SECONDS,
    calm_seconds: CALM_SECONDS,
    spike_delay_ms: SPIKE_DELAY_MS,
    audit_seconds: AUDIT_SECONDS,
  },
  startVUs: BASE_VUS,
  vuStages,
  stages,
  auditSeconds: AUDIT_SECONDS,
});

export const { options, setup, payments, applyStages, audit, teardown, handleSummary } = run;

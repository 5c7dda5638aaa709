/**
 * profiles/contest.js: the Rinha de Backend 2025 test scenario, as a k6 (v1.1.0) profile.
 *
 * It reproduces the behaviour of the contest's own test (rinha-test/rinha.js in
 * zanfranceschi/rinha-de-backend-2025, see ../../shared/spec/rinha-2025.md), written afresh on
 * lib/harness.js (shared with the other profiles; this file gives the contest's schedule):
 *
 *   setup             sets a random admin token on both processors (starting from
 *                     PROCESSOR_TOKEN), purges both processors, resets them to delay 0 /
 *                     failure false, and asks the backend to purge (failures ignored).
 *   payments          ramping VUs 1 -> MAX_REQUESTS over 6 stages; each iteration posts one
 *                     payment {"correlationId": <fresh uuid v4>, "amount": 19.90} to
 *                     ${TARGET}/payments, then sleeps 1 s. Accepted = 200/201/202/204.
 *   processor_stages  one VU that applies the six processor stages through the admin API at
 *                     0.1, 1, 2, 3, 4, 5 stage lengths (1, 10, 20, 30, 40, 50 s by default):
 *                         stage   default delay/failure   fallback delay/failure
 *                         0       0 / false               0 / false
 *                         1       100 / false             0 / false
 *                         2       100 / true              0 / false
 *                         3       2000 / true             1000 / true
 *                         4       20 / false              20 / false
 *                         5       0 / false               5000 / false
 *   audit             one VU; every stage length it reads the backend's /payments-summary and
 *                     both processors' /admin/payments-summary over [now-15 s, now-1.5 s]
 *                     and counts |(backend default - processor default) + (backend fallback -
 *                     processor fallback)| totalRequests as inconsistencies (the contest's
 *                     measure; any inconsistency costs a 35 % fine).
 *   teardown          reads the same three summaries over [now-(test+10 s), now] (70 s by
 *                     default): the final figures the score is computed from. It then puts
 *                     PROCESSOR_TOKEN back on both processors so that the next run can start.
 *
 * Every HTTP request has a 1.5 s timeout, like the contest's.
 *
 * Environment parameters (all optional):
 *   TARGET           backend base URL                            default http://localhost:9999
 *   DEFAULT_URL      default processor base URL                  default http://localhost:8001
 *   FALLBACK_URL     fallback processor base URL                 default http://localhost:8002
 *   MAX_REQUESTS     VUs reached at the end of the ramp          default 550 (the official run)
 *   STAGE_SECONDS    length of one processor stage, in seconds   default 10
 *                    The test lasts 6 x STAGE_SECONDS: the ramp, the stage times, the audit
 *                    period and the final window all scale with it, so STAGE_SECONDS=2 gives a
 *                    12-second run with the same shape. The audit window ([now-15 s, now-1.5 s])
 *                    and the 1 s sleep between payments do not scale: they concern the backend's
 *                    latency, not the length of the test. Only 10 is the contest itself.
 *   PROCESSOR_TOKEN  the processors' current admin token         default 123
 *   SUMMARY_PATH     where handleSummary writes the JSON summary; when unset the JSON is
 *                    printed to stdout after the text summary.
 *
 * The JSON summary (our own shape; read by rinha/score.py, which computes the contest's score):
 *   {
 *     "profile": "contest",
 *     "generated_at": ISO time,
 *     "params": {"max_requests", "stage_seconds", "test_seconds", "target", "default_url",
 *                "fallback_url", "amount": "19.90", "http_timeout_ms", "audit_window_s": [15, 1.5],
 *                "final_window_s"},
 *     "http": {"count", "p50", "p90", "p99", "max",      ms over the requests the contest's p99
 *                                                       covers: every HTTP request of the run
 *                                                       (setup, payments, stages, audits,
 *                                                       teardown) that got an expected response
 *                                                       (status 200-399), i.e. k6's
 *                                                       http_req_duration{expected_response:true};
 *                                                       null when there was none
 *              "all": {"count", "p99"},                  every request, failed ones included
 *              "failed",                                 requests k6 counts as failed
 *              "failed_payments"},                       payment POSTs that got no HTTP response
 *                                                       (timeout or connection error)
 *     "payments": {"accepted", "rejected"},              rejected = any other outcome
 *     "inconsistencies": N,                              the contest's audit measure, summed
 *     "audit": {"checks", "inconsistencies", "per_processor"},
 *                                                       per_processor = |d default| + |d fallback|,
 *                                                       which also sees a payment recorded under
 *                                                       the wrong processor (the contest does not)
 *     "backend": {"default": {"totalRequests", "totalAmount"}, "fallback": {...}},
 *     "processors": {"default": {"totalRequests", "totalAmount", "totalFee", "feePerTransaction"},
 *                    "fallback": {...}},
 *     "errors": {"admin", "backend_summary"}             failed admin-API calls (stages not applied,
 *                                                       summaries read as zeros) and failed backend
 *                                                       summary reads
 *   }
 * Money values (totalAmount, totalFee, feePerTransaction, amount) are decimal strings, the
 * shortest form of the number the server sent (k6 parses JSON numbers as doubles, exactly as the
 * contest's script does); load them as decimal.Decimal.
 *
 * Differences from the contest's script, all deliberate:
 *   - the new admin token is random (the contest uses its TOKEN variable, 123 when unset) and is
 *     restored to PROCESSOR_TOKEN in teardown;
 *   - setup resets delay and failure, and a failed admin call is counted in errors.admin instead
 *     of aborting the test (so that a dry run against nothing still completes). Those few extra
 *     admin requests (6 in all) enter the p99 like any other request; against ~16,800 requests
 *     they do not move it measurably;
 *   - the stages are applied by one scenario rather than six.
 * Validate with:  k6 inspect profiles/contest.js
 * Dry run:        MAX_REQUESTS=3 STAGE_SECONDS=1 SUMMARY_PATH=/tmp/s.json k6 run profiles/contest.js
 */

import { envNumber, profile } from "./lib/harness.js";

const MAX_REQUESTS = envNumber("MAX_REQUESTS", 550, { integer: true });
const STAGE_SECONDS = envNumber("STAGE_SECONDS", 10);

/** The processor stages: when (in stage lengths from the start) and what to set. */
const STAGES = [
  { at: 0.1, default: { delay: 0, failure: false }, fallback: { delay: 0, failure: false } },
  { at: 1, default: { delay: 100, failure: false }, fallback: { delay: 0, failure: false } },
  { at: 2, default: { delay: 100, failure: true }, fallback: { delay: 0, failure: false } },
  { at: 3, default: { delay: 2000, failure: true }, fallback: { delay: 1000, failure: true } },
  { at: 4, default: { delay: 20, failure: false }, fallback: { delay: 20, failure: false } },
  { at: 5, default: { delay: 0, failure: false }, fallback: { delay: 5000, failure: false } },
];

const run = profile({
  name: "contest",
  params: { stage_seconds: STAGE_SECONDS },
  startVUs: 1,
  vuStages: [{ target: MAX_REQUESTS, duration: 6 * STAGE_SECONDS }],
  stages: STAGES.map((stage) => ({ ...stage, at: stage.at * STAGE_SECONDS })),
  auditSeconds: STAGE_SECONDS,
  // As the contest's own script: the ramp only goes up, and the last audit's pause runs its
  // full length, so teardown comes up to one stage after the end of the payments.
  gracefulRampDown: "0s",
  auditOutlastsTest: true,
});

export const { options, setup, payments, applyStages, audit, teardown, handleSummary } = run;

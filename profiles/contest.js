/**
 * profiles/contest.js: the Rinha de Backend 2025 test scenario, as a k6 (v1.1.0) profile.
 *
 * It reproduces the behaviour of the contest's own test (rinha-test/rinha.js in
 * zanfranceschi/rinha-de-backend-2025, see ../../shared/spec/rinha-2025.md), written afresh:
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

import http from "k6/http";
import { sleep } from "k6";
import exec from "k6/execution";
import { Counter } from "k6/metrics";

// ---------------------------------------------------------------------------------------------
// Parameters

function envString(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === "" ? fallback : value;
}

function envNumber(name, fallback, { integer = false, min = 0 } = {}) {
  const raw = envString(name, String(fallback));
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= min || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a ${integer ? "whole " : ""}number above ${min}, got "${raw}"`);
  }
  return value;
}

const trimSlash = (url) => url.replace(/\/+$/, "");

const MAX_REQUESTS = envNumber("MAX_REQUESTS", 550, { integer: true });
const STAGE_SECONDS = envNumber("STAGE_SECONDS", 10);
const TARGET = trimSlash(envString("TARGET", "http://localhost:9999"));
const PROCESSOR_URLS = {
  default: trimSlash(envString("DEFAULT_URL", "http://localhost:8001")),
  fallback: trimSlash(envString("FALLBACK_URL", "http://localhost:8002")),
};
const INITIAL_TOKEN = envString("PROCESSOR_TOKEN", "123");
const SUMMARY_PATH = envString("SUMMARY_PATH", "");

const PAYMENT_AMOUNT = "19.90"; // sent as the JSON number 19.9, as the contest does
const ACCEPTED_STATUSES = [200, 201, 202, 204];
const HTTP_TIMEOUT_MS = 1500;
const TEST_SECONDS = 6 * STAGE_SECONDS;
const AUDIT_FROM_S = 15; // audit window: [now - 15 s, now - 1.5 s]
const AUDIT_TO_S = 1.5;
const FINAL_WINDOW_S = TEST_SECONDS + 10; // 70 s for the contest's 60 s

/** The processor stages: when (in stage lengths from the start) and what to set. */
const STAGES = [
  { at: 0.1, default: { delay: 0, failure: false }, fallback: { delay: 0, failure: false } },
  { at: 1, default: { delay: 100, failure: false }, fallback: { delay: 0, failure: false } },
  { at: 2, default: { delay: 100, failure: true }, fallback: { delay: 0, failure: false } },
  { at: 3, default: { delay: 2000, failure: true }, fallback: { delay: 1000, failure: true } },
  { at: 4, default: { delay: 20, failure: false }, fallback: { delay: 20, failure: false } },
  { at: 5, default: { delay: 0, failure: false }, fallback: { delay: 5000, failure: false } },
];

const PROCESSORS = ["default", "fallback"];
const ms = (seconds) => `${Math.round(seconds * 1000)}ms`;

// ---------------------------------------------------------------------------------------------
// Options

export const options = {
  // p(99) is the figure the contest scores; the others are for us.
  summaryTrendStats: ["p(50)", "p(90)", "p(99)", "max", "count"],
  scenarios: {
    payments: {
      executor: "ramping-vus",
      exec: "payments",
      startVUs: 1,
      stages: [{ target: MAX_REQUESTS, duration: ms(TEST_SECONDS) }],
      gracefulRampDown: "0s",
    },
    processor_stages: {
      executor: "per-vu-iterations",
      exec: "applyStages",
      vus: 1,
      iterations: 1,
      maxDuration: ms(TEST_SECONDS),
    },
    audit: {
      executor: "constant-vus",
      exec: "audit",
      vus: 1,
      duration: ms(TEST_SECONDS),
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Metrics (teardown hands its figures to handleSummary through counters, the only channel k6 has)

const paymentsAccepted = new Counter("contest_payments_accepted");
const paymentsRejected = new Counter("contest_payments_rejected");
const paymentsNoResponse = new Counter("contest_payments_no_response");
const auditChecks = new Counter("contest_audit_checks");
const auditInconsistencies = new Counter("contest_audit_inconsistencies");
const auditPerProcessor = new Counter("contest_audit_per_processor");
const adminErrors = new Counter("contest_admin_errors");
const backendSummaryErrors = new Counter("contest_backend_summary_errors");

/** Final figures: one counter per (side, processor, field), added to once, in teardown. */
const BACKEND_FIELDS = ["totalRequests", "totalAmount"];
const PROCESSOR_FIELDS = ["totalRequests", "totalAmount", "totalFee", "feePerTransaction"];
const finalCounters = {};
for (const side of ["backend", "processor"]) {
  for (const name of PROCESSORS) {
    for (const field of side === "backend" ? BACKEND_FIELDS : PROCESSOR_FIELDS) {
      finalCounters[`${side}.${name}.${field}`] = new Counter(`contest_final_${side}_${name}_${field}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

const JSON_HEADERS = { "Content-Type": "application/json" };

function request(method, url, body, name, headers = JSON_HEADERS) {
  return http.asyncRequest(method, url, body, {
    headers,
    timeout: HTTP_TIMEOUT_MS,
    tags: { name },
  });
}

function adminHeaders(token) {
  return { ...JSON_HEADERS, "X-Rinha-Token": token };
}

/** An admin call on a processor; returns true when it answered the expected status. */
async function admin(processor, token, method, path, body, expected) {
  const res = await request(
    method,
    `${PROCESSOR_URLS[processor]}${path}`,
    body === null ? null : JSON.stringify(body),
    `${processor} ${method} ${path}`,
    adminHeaders(token),
  );
  if (res.status === expected) return true;
  adminErrors.add(1);
  console.error(`${processor} ${method} ${path}: expected HTTP ${expected}, got ${describe(res)}`);
  return false;
}

function describe(res) {
  return res.status === 0 ? `no response (${res.error || "error"})` : `HTTP ${res.status}`;
}

function windowQuery(fromMs, toMs) {
  return `from=${new Date(fromMs).toISOString()}&to=${new Date(toMs).toISOString()}`;
}

const ZERO_PROCESSOR_SUMMARY = { totalRequests: 0, totalAmount: 0, totalFee: 0, feePerTransaction: 0 };
const ZERO_BACKEND_SUMMARY = {
  default: { totalRequests: 0, totalAmount: 0 },
  fallback: { totalRequests: 0, totalAmount: 0 },
};

/** A processor's admin summary; zeros when it cannot be read (as the contest does). */
async function processorSummary(processor, token, query) {
  const res = await request(
    "GET",
    `${PROCESSOR_URLS[processor]}/admin/payments-summary?${query}`,
    null,
    `${processor} GET /admin/payments-summary`,
    adminHeaders(token),
  );
  const parsed = res.status === 200 ? parseJson(res.body) : null;
  if (parsed === null) {
    adminErrors.add(1);
    console.error(`${processor} /admin/payments-summary: ${describe(res)}`);
    return ZERO_PROCESSOR_SUMMARY;
  }
  return parsed;
}

/** The backend's summary; zeros when it cannot be read (as the contest does). */
async function backendSummary(query) {
  const res = await request("GET", `${TARGET}/payments-summary?${query}`, null, "backend GET /payments-summary");
  const parsed = res.status === 200 ? parseJson(res.body) : null;
  if (parsed === null || !parsed.default || !parsed.fallback) {
    backendSummaryErrors.add(1);
    console.error(`backend /payments-summary: ${describe(res)}`);
    return ZERO_BACKEND_SUMMARY;
  }
  return parsed;
}

function parseJson(body) {
  try {
    return JSON.parse(body);
  } catch (_) {
    return null;
  }
}

const asNumber = (value) => Number(value ?? 0) || 0;

// ---------------------------------------------------------------------------------------------
// Lifecycle

export async function setup() {
  const token = crypto.randomUUID();
  const tokens = {};
  for (const processor of PROCESSORS) {
    const changed = await admin(processor, INITIAL_TOKEN, "PUT", "/admin/configurations/token", { token }, 204);
    // If the token could not be changed the processor still has the old one: keep using it.
    tokens[processor] = changed ? token : INITIAL_TOKEN;
    if (!changed) {
      console.error(
        `${processor}: could not set the admin token (is PROCESSOR_TOKEN=${INITIAL_TOKEN} its current token? ` +
          "a previous run that did not reach teardown leaves a random one: restart the processors)",
      );
    }
  }
  for (const processor of PROCESSORS) {
    await admin(processor, tokens[processor], "POST", "/admin/purge-payments", null, 200);
    await admin(processor, tokens[processor], "PUT", "/admin/configurations/delay", { delay: 0 }, 200);
    await admin(processor, tokens[processor], "PUT", "/admin/configurations/failure", { failure: false }, 200);
  }
  const purge = await request("POST", `${TARGET}/purge-payments`, null, "backend POST /purge-payments");
  if (purge.status < 200 || purge.status > 299) {
    console.info(`backend /purge-payments: ${describe(purge)} (ignored: the endpoint is optional)`);
  }
  return { tokens };
}

export async function payments() {
  const body = JSON.stringify({ correlationId: crypto.randomUUID(), amount: Number(PAYMENT_AMOUNT) });
  const res = await request("POST", `${TARGET}/payments`, body, "backend POST /payments");
  if (ACCEPTED_STATUSES.includes(res.status)) {
    paymentsAccepted.add(1);
  } else {
    paymentsRejected.add(1);
    if (res.status === 0) paymentsNoResponse.add(1);
  }
  sleep(1);
}

export async function applyStages(data) {
  const start = exec.scenario.startTime;
  for (const stage of STAGES) {
    const wait = start + stage.at * STAGE_SECONDS * 1000 - Date.now();
    if (wait > 0) sleep(wait / 1000);
    // Delays first, then failure flags, processor by processor, as the contest does.
    for (const processor of PROCESSORS) {
      const { delay } = stage[processor];
      await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/delay", { delay }, 200);
    }
    for (const processor of PROCESSORS) {
      const { failure } = stage[processor];
      await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/failure", { failure }, 200);
    }
  }
}

export async function audit(data) {
  const now = Date.now();
  const query = windowQuery(now - AUDIT_FROM_S * 1000, now - AUDIT_TO_S * 1000);
  const [processorDefault, processorFallback, backend] = await Promise.all([
    processorSummary("default", data.tokens.default, query),
    processorSummary("fallback", data.tokens.fallback, query),
    backendSummary(query),
  ]);
  const gapDefault = asNumber(backend.default.totalRequests) - asNumber(processorDefault.totalRequests);
  const gapFallback = asNumber(backend.fallback.totalRequests) - asNumber(processorFallback.totalRequests);
  const inconsistencies = Math.abs(gapDefault + gapFallback);
  auditChecks.add(1);
  auditInconsistencies.add(inconsistencies);
  auditPerProcessor.add(Math.abs(gapDefault) + Math.abs(gapFallback));
  if (inconsistencies > 0) {
    console.warn(`audit: ${inconsistencies} inconsistencies (default ${gapDefault}, fallback ${gapFallback})`);
  }
  sleep(STAGE_SECONDS);
}

export async function teardown(data) {
  const now = Date.now();
  const query = windowQuery(now - FINAL_WINDOW_S * 1000, now);
  const [processorDefault, processorFallback, backend] = await Promise.all([
    processorSummary("default", data.tokens.default, query),
    processorSummary("fallback", data.tokens.fallback, query),
    backendSummary(query),
  ]);
  const processors = { default: processorDefault, fallback: processorFallback };
  for (const name of PROCESSORS) {
    for (const field of BACKEND_FIELDS) {
      finalCounters[`backend.${name}.${field}`].add(asNumber(backend[name][field]));
    }
    for (const field of PROCESSOR_FIELDS) {
      finalCounters[`processor.${name}.${field}`].add(asNumber(processors[name][field]));
    }
  }
  for (const processor of PROCESSORS) {
    if (data.tokens[processor] !== INITIAL_TOKEN) {
      await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/token", { token: INITIAL_TOKEN }, 204);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Summary

function metric(data, name, stat) {
  const value = data.metrics[name]?.values?.[stat];
  return value === undefined ? null : value;
}

const count = (data, name) => metric(data, name, "count") ?? 0;

/** The shortest decimal form of a double, as a string (what String() gives, never exponent for our range). */
const money = (value) => String(value);

function buildSummary(data) {
  const timed = "http_req_duration{expected_response:true}";
  const final = (side, name, field) => count(data, `contest_final_${side}_${name}_${field}`);
  const backend = {};
  const processors = {};
  for (const name of PROCESSORS) {
    backend[name] = {
      totalRequests: final("backend", name, "totalRequests"),
      totalAmount: money(final("backend", name, "totalAmount")),
    };
    processors[name] = {
      totalRequests: final("processor", name, "totalRequests"),
      totalAmount: money(final("processor", name, "totalAmount")),
      totalFee: money(final("processor", name, "totalFee")),
      feePerTransaction: money(final("processor", name, "feePerTransaction")),
    };
  }
  const inconsistencies = count(data, "contest_audit_inconsistencies");
  return {
    profile: "contest",
    generated_at: new Date().toISOString(),
    params: {
      max_requests: MAX_REQUESTS,
      stage_seconds: STAGE_SECONDS,
      test_seconds: TEST_SECONDS,
      target: TARGET,
      default_url: PROCESSOR_URLS.default,
      fallback_url: PROCESSOR_URLS.fallback,
      amount: PAYMENT_AMOUNT,
      http_timeout_ms: HTTP_TIMEOUT_MS,
      audit_window_s: [AUDIT_FROM_S, AUDIT_TO_S],
      final_window_s: FINAL_WINDOW_S,
    },
    http: {
      count: metric(data, timed, "count") ?? 0,
      p50: metric(data, timed, "p(50)"),
      p90: metric(data, timed, "p(90)"),
      p99: metric(data, timed, "p(99)"),
      max: metric(data, timed, "max"),
      all: { count: count(data, "http_reqs"), p99: metric(data, "http_req_duration", "p(99)") },
      failed: metric(data, "http_req_failed", "passes") ?? 0,
      failed_payments: count(data, "contest_payments_no_response"),
    },
    payments: {
      accepted: count(data, "contest_payments_accepted"),
      rejected: count(data, "contest_payments_rejected"),
    },
    inconsistencies,
    audit: {
      checks: count(data, "contest_audit_checks"),
      inconsistencies,
      per_processor: count(data, "contest_audit_per_processor"),
    },
    backend,
    processors,
    errors: {
      admin: count(data, "contest_admin_errors"),
      backend_summary: count(data, "contest_backend_summary_errors"),
    },
  };
}

const fmtMs = (value) => (value === null ? "n/a" : `${value.toFixed(2)} ms`);

function textSummary(s) {
  const recorded = s.backend.default.totalRequests + s.backend.fallback.totalRequests;
  const lag = s.payments.accepted - recorded;
  const lines = [
    "",
    `contest profile: ${s.params.max_requests} VUs max, ${s.params.test_seconds} s ` +
      `(STAGE_SECONDS=${s.params.stage_seconds}) against ${s.params.target}`,
    `  payments    accepted ${s.payments.accepted}, rejected ${s.payments.rejected} ` +
      `(${s.http.failed_payments} without a response)`,
    `  latency     p50 ${fmtMs(s.http.p50)}  p90 ${fmtMs(s.http.p90)}  p99 ${fmtMs(s.http.p99)}  ` +
      `max ${fmtMs(s.http.max)}  over ${s.http.count} of ${s.http.all.count} requests`,
    `  backend     default ${s.backend.default.totalRequests} (${s.backend.default.totalAmount}), ` +
      `fallback ${s.backend.fallback.totalRequests} (${s.backend.fallback.totalAmount})`,
    `  processors  default ${s.processors.default.totalRequests} (${s.processors.default.totalAmount}), ` +
      `fallback ${s.processors.fallback.totalRequests} (${s.processors.fallback.totalAmount})`,
    `  lag         ${lag}${lag < 0 ? "  (more recorded than accepted: disqualified)" : ""}`,
    `  audits      ${s.audit.checks} checks, ${s.inconsistencies} inconsistencies` +
      (s.audit.per_processor !== s.inconsistencies ? ` (${s.audit.per_processor} counting per processor)` : ""),
  ];
  if (s.errors.admin || s.errors.backend_summary) {
    lines.push(`  errors      ${s.errors.admin} admin-API calls failed, ${s.errors.backend_summary} backend summaries failed`);
  }
  lines.push(
    SUMMARY_PATH ? `  summary     ${SUMMARY_PATH} (score it: python -m rinha.score ${SUMMARY_PATH})` : "",
    "",
  );
  return lines.join("\n");
}

export function handleSummary(data) {
  const summary = buildSummary(data);
  const json = JSON.stringify(summary, null, 2) + "\n";
  const text = textSummary(summary);
  if (SUMMARY_PATH) {
    return { stdout: text, [SUMMARY_PATH]: json };
  }
  return { stdout: text + json };
}

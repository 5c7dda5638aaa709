/**
 * profiles/lib/harness.js: what every profile (contest.js, spike.js, long-outage.js, soak.js)
 * shares (k6 v1.1.0).
 *
 * The contest's moving parts (contest.js's header describes them and the JSON summary), made
 * parametric: a profile gives its name, its VU schedule (k6 ramping-vus stages), its processor
 * stages (absolute seconds from the start) and its audit period; the harness gives back every
 * function k6 needs, which the profile re-exports:
 *
 *   setup             random admin token on both processors (from PROCESSOR_TOKEN), purge both,
 *                     delay 0 / failure false, ask the backend to purge (failure ignored).
 *   payments          each iteration posts {"correlationId": <uuid v4>, "amount": 19.90} to
 *                     ${TARGET}/payments and sleeps 1 s; accepted = 200/201/202/204.
 *   applyStages       one VU applying the processor stages at their times (delays first, then
 *                     failure flags, processor by processor, as the contest does).
 *   audit             one VU: every AUDIT_SECONDS, the contest's audit over [now-15 s, now-1.5 s].
 *   teardown          the final summaries over [now-(test+10 s), now], then PROCESSOR_TOKEN back.
 *   handleSummary     the JSON summary in contest.js's shape (read by rinha/score.py; profile and
 *                     params say which profile ran with what), to SUMMARY_PATH or stdout.
 *
 * Every request has the contest's 1.5 s timeout. Tags are the contest.js ones, so that
 * `rinha profile run` reads the stage changes from the scenario `processor_stages` the same way
 * for every profile.
 *
 * Common environment parameters: TARGET, DEFAULT_URL, FALLBACK_URL, PROCESSOR_TOKEN,
 * SUMMARY_PATH (as in contest.js), MAX_REQUESTS (the peak VU count; its default is the profile's).
 */

import http from "k6/http";
import { sleep } from "k6";
import exec from "k6/execution";
import { Counter } from "k6/metrics";

// ---------------------------------------------------------------------------------------------
// Parameters

export function envString(name, fallback) {
  const value = __ENV[name];
  return value === undefined || value === "" ? fallback : value;
}

/** A number above ``min`` from the environment (``integer``: whole). */
export function envNumber(name, fallback, { integer = false, min = 0 } = {}) {
  const raw = envString(name, String(fallback));
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= min || (integer && !Number.isInteger(value))) {
    throw new Error(`${name} must be a ${integer ? "whole " : ""}number above ${min}, got "${raw}"`);
  }
  return value;
}

const trimSlash = (url) => url.replace(/\/+$/, "");

export const TARGET = trimSlash(envString("TARGET", "http://localhost:9999"));
const PROCESSOR_URLS = {
  default: trimSlash(envString("DEFAULT_URL", "http://localhost:8001")),
  fallback: trimSlash(envString("FALLBACK_URL", "http://localhost:8002")),
};
const INITIAL_TOKEN = envString("PROCESSOR_TOKEN", "123");
const SUMMARY_PATH = envString("SUMMARY_PATH", "");

const PAYMENT_AMOUNT = "19.90";
const ACCEPTED_STATUSES = [200, 201, 202, 204];
const HTTP_TIMEOUT_MS = 1500;
const AUDIT_FROM_S = 15;
const AUDIT_TO_S = 1.5;
const PROCESSORS = ["default", "fallback"];
const BACKEND_FIELDS = ["totalRequests", "totalAmount"];
const PROCESSOR_FIELDS = ["totalRequests", "totalAmount", "totalFee", "feePerTransaction"];

export const ms = (seconds) => `${Math.round(seconds * 1000)}ms`;

// ---------------------------------------------------------------------------------------------
// HTTP helpers

const JSON_HEADERS = { "Content-Type": "application/json" };
const adminHeaders = (token) => ({ ...JSON_HEADERS, "X-Rinha-Token": token });

function request(method, url, body, name, headers = JSON_HEADERS) {
  return http.asyncRequest(method, url, body, { headers, timeout: HTTP_TIMEOUT_MS, tags: { name } });
}

function describe(res) {
  return res.status === 0 ? `no response (${res.error || "error"})` : `HTTP ${res.status}`;
}

function parseJson(body) {
  try {
    return JSON.parse(body);
  } catch (_) {
    return null;
  }
}

const asNumber = (value) => Number(value ?? 0) || 0;
const windowQuery = (fromMs, toMs) => `from=${new Date(fromMs).toISOString()}&to=${new Date(toMs).toISOString()}`;

const ZERO_PROCESSOR_SUMMARY = { totalRequests: 0, totalAmount: 0, totalFee: 0, feePerTransaction: 0 };
const ZERO_BACKEND_SUMMARY = {
  default: { totalRequests: 0, totalAmount: 0 },
  fallback: { totalRequests: 0, totalAmount: 0 },
};

// ---------------------------------------------------------------------------------------------
// The profile

/**
 * Everything k6 needs for one profile.
 *
 *   name         the profile's name (the summary's "profile")
 *   params       its own parameters, copied into the summary's "params"
 *   startVUs     VUs at the start of the payments scenario
 *   vuStages     the payments scenario's ramping-vus stages ({target, duration: seconds})
 *   stages       processor stages: [{at: seconds, default: {delay, failure}, fallback: {...}}]
 *   auditSeconds the audit period
 *   gracefulRampDown   k6's, for the payments scenario (default 3 s: see below)
 *   auditOutlastsTest  the last audit's pause runs its full period even past the test's end,
 *                      delaying teardown (the contest's script does; default: it is cut short)
 */
export function profile({ name, params, startVUs, vuStages, stages, auditSeconds, gracefulRampDown = "3s",
                          auditOutlastsTest = false }) {
  const testSeconds = vuStages.reduce((total, stage) => total + stage.duration, 0);
  const finalWindowSeconds = testSeconds + 10;
  const maxVUs = Math.max(startVUs, ...vuStages.map((stage) => stage.target));

  // Metrics: created here, in k6's init context. Teardown hands its figures to handleSummary
  // through counters, the only channel k6 has.
  const paymentsAccepted = new Counter("contest_payments_accepted");
  const paymentsRejected = new Counter("contest_payments_rejected");
  const paymentsNoResponse = new Counter("contest_payments_no_response");
  const auditChecks = new Counter("contest_audit_checks");
  const auditInconsistencies = new Counter("contest_audit_inconsistencies");
  const auditPerProcessor = new Counter("contest_audit_per_processor");
  const adminErrors = new Counter("contest_admin_errors");
  const backendSummaryErrors = new Counter("contest_backend_summary_errors");
  // Read live by `rinha profile run` (k6's REST API), not by the summary.
  const stagesApplied = new Counter("contest_processor_stages");
  const finalCounters = {};
  for (const side of ["backend", "processor"]) {
    for (const processor of PROCESSORS) {
      for (const field of side === "backend" ? BACKEND_FIELDS : PROCESSOR_FIELDS) {
        finalCounters[`${side}.${processor}.${field}`] = new Counter(`contest_final_${side}_${processor}_${field}`);
      }
    }
  }

  async function admin(processor, token, method, path, body, expected) {
    const res = await request(method, `${PROCESSOR_URLS[processor]}${path}`, body === null ? null : JSON.stringify(body),
      `${processor} ${method} ${path}`, adminHeaders(token));
    if (res.status === expected) return true;
    adminErrors.add(1);
    console.error(`${processor} ${method} ${path}: expected HTTP ${expected}, got ${describe(res)}`);
    return false;
  }

  async function processorSummary(processor, token, query) {
    const res = await request("GET", `${PROCESSOR_URLS[processor]}/admin/payments-summary?${query}`, null,
      `${processor} GET /admin/payments-summary`, adminHeaders(token));
    const parsed = res.status === 200 ? parseJson(res.body) : null;
    if (parsed === null) {
      adminErrors.add(1);
      console.error(`${processor} /admin/payments-summary: ${describe(res)}`);
      return ZERO_PROCESSOR_SUMMARY;
    }
    return parsed;
  }

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

  const options = {
    summaryTrendStats: ["p(50)", "p(90)", "p(99)", "max", "count"],
    scenarios: {
      payments: {
        executor: "ramping-vus",
        exec: "payments",
        startVUs,
        stages: vuStages.map((stage) => ({ target: stage.target, duration: ms(stage.duration) })),
        // 3 s: a VU removed by a ramp-down finishes its iteration (a payment in flight, ≤ 1.5 s,
        // then the 1 s sleep): interrupted, its payment could be accepted by the backend yet
        // counted by k6 neither accepted nor rejected ("more recorded than accepted").
        gracefulRampDown,
      },
      processor_stages: {
        executor: "per-vu-iterations",
        exec: "applyStages",
        vus: 1,
        iterations: 1,
        maxDuration: ms(testSeconds),
      },
      audit: { executor: "constant-vus", exec: "audit", vus: 1, duration: ms(testSeconds) },
    },
  };

  async function setup() {
    const token = crypto.randomUUID();
    const tokens = {};
    for (const processor of PROCESSORS) {
      const changed = await admin(processor, INITIAL_TOKEN, "PUT", "/admin/configurations/token", { token }, 204);
      tokens[processor] = changed ? token : INITIAL_TOKEN;
      if (!changed) {
        console.error(`${processor}: could not set the admin token (is PROCESSOR_TOKEN=${INITIAL_TOKEN} its current ` +
          "token? a previous run that did not reach teardown leaves a random one: restart the processors)");
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

  async function payments() {
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

  async function applyStages(data) {
    const start = exec.scenario.startTime;
    for (const stage of stages) {
      const wait = start + stage.at * 1000 - Date.now();
      if (wait > 0) sleep(wait / 1000);
      for (const processor of PROCESSORS) {
        await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/delay",
          { delay: stage[processor].delay }, 200);
      }
      for (const processor of PROCESSORS) {
        await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/failure",
          { failure: stage[processor].failure }, 200);
      }
      stagesApplied.add(1);
    }
  }

  async function audit(data) {
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
    // The next audit, or the end of the test if it comes first (a short run is not prolonged).
    const left = exec.scenario.startTime + testSeconds * 1000 - Date.now();
    sleep((auditOutlastsTest ? auditSeconds * 1000 : Math.max(0, Math.min(auditSeconds * 1000, left))) / 1000);
  }

  async function teardown(data) {
    const now = Date.now();
    const query = windowQuery(now - finalWindowSeconds * 1000, now);
    const [processorDefault, processorFallback, backend] = await Promise.all([
      processorSummary("default", data.tokens.default, query),
      processorSummary("fallback", data.tokens.fallback, query),
      backendSummary(query),
    ]);
    const processors = { default: processorDefault, fallback: processorFallback };
    for (const processor of PROCESSORS) {
      for (const field of BACKEND_FIELDS) {
        finalCounters[`backend.${processor}.${field}`].add(asNumber(backend[processor][field]));
      }
      for (const field of PROCESSOR_FIELDS) {
        finalCounters[`processor.${processor}.${field}`].add(asNumber(processors[processor][field]));
      }
    }
    for (const processor of PROCESSORS) {
      if (data.tokens[processor] !== INITIAL_TOKEN) {
        await admin(processor, data.tokens[processor], "PUT", "/admin/configurations/token", { token: INITIAL_TOKEN }, 204);
      }
    }
  }

  function handleSummary(data) {
    const summary = buildSummary(data, {
      name, params, maxVUs, testSeconds, finalWindowSeconds,
    });
    const json = JSON.stringify(summary, null, 2) + "\n";
    const text = textSummary(summary, params);
    return SUMMARY_PATH ? { stdout: text, [SUMMARY_PATH]: json } : { stdout: text + json };
  }

  return { options, setup, payments, applyStages, audit, teardown, handleSummary };
}

// ---------------------------------------------------------------------------------------------
// Summary (contest.js's shape)

const fmtMs = (value) => (value === null ? "n/a" : `${value.toFixed(2)} ms`);

/** The human summary; ``params`` (the profile's own) are shown as their variables, NAME=value. */
function textSummary(s, params) {
  const recorded = s.backend.default.totalRequests + s.backend.fallback.totalRequests;
  const lag = s.payments.accepted - recorded;
  const own = Object.entries(params).map(([key, value]) => `${key.toUpperCase()}=${value}`).join(", ");
  const lines = [
    "",
    `${s.profile} profile: ${s.params.max_requests} VUs max, ${s.params.test_seconds} s ` +
      `${own ? `(${own}) ` : ""}against ${s.params.target}`,
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

function metric(data, metricName, stat) {
  const value = data.metrics[metricName]?.values?.[stat];
  return value === undefined ? null : value;
}

const count = (data, metricName) => metric(data, metricName, "count") ?? 0;

function buildSummary(data, { name, params, maxVUs, testSeconds, finalWindowSeconds }) {
  const timed = "http_req_duration{expected_response:true}";
  const final = (side, processor, field) => count(data, `contest_final_${side}_${processor}_${field}`);
  const backend = {};
  const processors = {};
  for (const processor of PROCESSORS) {
    backend[processor] = {
      totalRequests: final("backend", processor, "totalRequests"),
      totalAmount: String(final("backend", processor, "totalAmount")),
    };
    processors[processor] = {
      totalRequests: final("processor", processor, "totalRequests"),
      totalAmount: String(final("processor", processor, "totalAmount")),
      totalFee: String(final("processor", processor, "totalFee")),
      feePerTransaction: String(final("processor", processor, "feePerTransaction")),
    };
  }
  const inconsistencies = count(data, "contest_audit_inconsistencies");
  return {
    profile: name,
    generated_at: new Date().toISOString(),
    params: {
      ...params,
      max_requests: maxVUs,
      test_seconds: testSeconds,
      target: TARGET,
      default_url: PROCESSOR_URLS.default,
      fallback_url: PROCESSOR_URLS.fallback,
      amount: PAYMENT_AMOUNT,
      http_timeout_ms: HTTP_TIMEOUT_MS,
      audit_window_s: [AUDIT_FROM_S, AUDIT_TO_S],
      final_window_s: finalWindowSeconds,
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

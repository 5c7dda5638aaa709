// POST /payments at a constant arrival rate, fresh correlationId each, keep-alive.
// Env: TARGET (http://127.0.0.1:9999), RATE (550 per second), DURATION (15s), SUMMARY_PATH.
// Writes {"count", "p50", "p90", "p99", "max", "failed"} (times in ms) to SUMMARY_PATH.
import http from "k6/http";

const TARGET = __ENV.TARGET || "http://127.0.0.1:9999";
const RATE = parseInt(__ENV.RATE || "550", 10);

export const options = {
  summaryTrendStats: ["p(50)", "p(90)", "p(99)", "max", "count"],
  scenarios: {
    payments: {
      executor: "constant-arrival-rate",
      rate: RATE,
      timeUnit: "1s",
      duration: __ENV.DURATION || "15s",
      preAllocatedVUs: Math.max(20, Math.ceil(RATE / 10)),
      maxVUs: Math.max(200, RATE),
    },
  },
};

function uuid4() {
  const hex = "0123456789abcdef";
  let out = "";
  for (let i = 0; i < 36; i++) {
    if (i === 8 || i === 13 || i === 18 || i === 23) out += "-";
    else if (i === 14) out += "4";
    else if (i === 19) out += hex[8 + Math.floor(Math.random() * 4)];
    else out += hex[Math.floor(Math.random() * 16)];
  }
  return out;
}

const params = { headers: { "Content-Type": "application/json" }, timeout: "1500ms" };

export default function () {
  http.post(`${TARGET}/payments`, `{"correlationId":"${uuid4()}","amount":19.90}`, params);
}

export function handleSummary(data) {
  const d = data.metrics.http_req_duration.values;
  const failed = data.metrics.http_req_failed ? data.metrics.http_req_failed.values.passes : 0;
  const out = { count: d.count, p50: d["p(50)"], p90: d["p(90)"], p99: d["p(99)"], max: d.max, failed };
  const files = { stdout: JSON.stringify(out) + "\n" };
  if (__ENV.SUMMARY_PATH) files[__ENV.SUMMARY_PATH] = JSON.stringify(out);
  return files;
}
